"""What a block's phases return: `PreProcessResult` (on_preprocess), `OnDataResult` (on_data)."""

from __future__ import annotations

from typing import Any

from .packet import AIOSPacket, FileInfo

__all__ = ["OnDataResult", "PreProcessResult"]


class PreProcessResult:
    """One unit of work for ``on_data``: the packet plus whatever ``on_preprocess`` extracted.

    Both documented shapes work: ``PreProcessResult(packet=p, extra_data={...})`` and the older
    positional ``PreProcessResult(p, extra_data, session_id)``. ``session_id`` defaults to the
    packet's.
    """

    __slots__ = ("extra_data", "packet", "session_id")

    def __init__(
        self,
        packet: AIOSPacket | None = None,
        extra_data: Any = None,
        session_id: str | None = None,
    ) -> None:
        self.packet = packet
        self.extra_data: Any = {} if extra_data is None else extra_data
        if session_id is None:
            session_id = packet.session_id if packet is not None else ""
        self.session_id: str = session_id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PreProcessResult):
            return NotImplemented
        return (self.packet, self.extra_data, self.session_id) == (
            other.packet,
            other.extra_data,
            other.session_id,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"PreProcessResult(packet={self.packet!r}, extra_data={self.extra_data!r}, "
            f"session_id={self.session_id!r})"
        )


class OnDataResult:
    """The output of ``on_data``: a JSON-serializable ``output`` placed in the output packet's data.

    ``files``, when given, replace the input packet's files on the output packet (otherwise
    the input's files travel on unchanged).
    """

    __slots__ = ("files", "output")

    def __init__(self, output: Any = None, files: list[FileInfo] | None = None) -> None:
        self.output: Any = output
        self.files = files

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OnDataResult):
            return NotImplemented
        return (self.output, self.files) == (other.output, other.files)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"OnDataResult(output={self.output!r})"
