"""`AIOSPacket` and `FileInfo`: the job as a block author sees it, and its wire format.

The wire format is the protobuf message in ``proto/aios_packet.proto``. The Python type is a
small mutable object instead of the generated message, so that ``data`` may also hold a dict or
list: any non-string ``data`` (or ``metadata``/``output_ptr``) is JSON-encoded when the packet
is serialized. A Muxer's merged packet carries a `MuxedData`: the JSON text of
``{"inputs": [...]}`` (a ``str``, so ``json.loads(packet.data)`` works) that also reads as that
dict (``"inputs" in data``, ``data["inputs"]``, ``data == {...}``). The protobuf-style methods a
block may call (``SerializeToString``, ``ParseFromString``, ``FromString``, ``CopyFrom``) work
as usual.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf.message import DecodeError, EncodeError

from . import _json
from ._proto import aios_packet_pb2 as _pb
from .errors import DataDecodeError, PacketDecodeError, PacketError
from .files import FileInfo, FileList, _file_list
from .muxed import MuxedData

__all__ = [
    "HOPS_HEADER",
    "AIOSPacket",
    "FileInfo",
    "FileList",
    "MuxedData",
    "decode_packet",
    "encode_output",
    "hops_of",
    "make_packet",
    "packet_json",
]


HOPS_HEADER = "aios-hops"
"""The header counting the blocks a packet's ancestors were output by (see ``hops_of``)."""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _json.dumps(value)


class AIOSPacket:
    """One job. Fields as in the protobuf message; ``data`` may also hold a dict or list."""

    # _msg/_parsed: the message a decoded packet came from and the field objects read from
    # it, so an output whose identity fields are untouched is serialized by setting one
    # field of that message instead of building a new one (the hot path's encode).
    __slots__ = (
        "_files",
        "_headers",
        "_hops",
        "_msg",
        "_parsed",
        "data",
        "output_ptr",
        "seq_no",
        "session_id",
        "ts",
    )

    def __init__(
        self,
        session_id: str = "",
        seq_no: int = 0,
        data: Any = "",
        ts: float = 0.0,
        output_ptr: Any = "",
        files: Iterable[Any] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.session_id: str = session_id
        self.seq_no: int = seq_no
        self.data: Any = data
        self.ts: float = ts
        self.output_ptr: Any = output_ptr
        self._files: FileList | None = _file_list(files)
        self._headers: dict[str, str] | None = dict(headers) if headers else {}
        self._hops = -1  # the hop count, once read (hops_of)
        self._msg: _pb.AIOSPacket | None = None
        self._parsed: tuple[Any, ...] = ()

    @property
    def files(self) -> FileList:
        """Attached files; assign any iterable of FileInfo or ``(metadata, bytes)`` tuples."""
        files = self._files
        if files is None:  # decoded, never looked at: built on first use
            msg = self._msg
            files = self._files = _file_list(msg.files if msg is not None else ())
        return files

    @files.setter
    def files(self, value: Iterable[Any]) -> None:
        self._files = value if isinstance(value, FileList) else _file_list(value)

    @property
    def headers(self) -> dict[str, str]:
        """Metadata that travels with the packet to its outputs (``aios-hops``, trace
        context): text keys and values."""
        headers = self._headers
        if headers is None:  # decoded, never looked at: built on first use
            msg = self._msg
            headers = self._headers = dict(msg.headers) if msg is not None else {}
        return headers

    @headers.setter
    def headers(self, value: Mapping[str, str]) -> None:
        self._headers = dict(value)
        self._hops = -1

    # -- protobuf-compatible surface -------------------------------------------------------
    def SerializeToString(self) -> bytes:
        """Encode to the wire format (non-string ``data`` is JSON-encoded)."""
        try:
            return self.to_proto().SerializeToString()
        except (TypeError, ValueError, EncodeError) as exc:
            raise PacketError(
                f"cannot encode packet: {exc}", session_id=str(self.session_id), seq_no=0
            ) from exc

    def ParseFromString(self, raw: bytes) -> int:
        """Replace this packet's fields with those decoded from ``raw``; returns len(raw)."""
        other = decode_packet(raw)
        self.CopyFrom(other)
        return len(raw)

    @classmethod
    def FromString(cls, raw: bytes) -> AIOSPacket:
        """Decode a packet from the wire format (raises PacketDecodeError)."""
        return decode_packet(raw)

    def CopyFrom(self, other: AIOSPacket) -> None:
        """Make this packet a deep copy of ``other``."""
        clone = copy.deepcopy(other)
        for name in ("session_id", "seq_no", "data", "ts", "output_ptr", "files", "headers"):
            setattr(self, name, getattr(clone, name))
        self._msg, self._parsed = None, ()

    def Clear(self) -> None:
        """Reset every field to its default."""
        self.__init__()  # type: ignore[misc]

    def ByteSize(self) -> int:
        """Size of the serialized packet in bytes."""
        return len(self.SerializeToString())

    def to_proto(self) -> _pb.AIOSPacket:
        """The generated protobuf message for this packet."""
        return _pb.AIOSPacket(
            session_id=self.session_id,
            seq_no=self.seq_no,
            data=_text(self.data),
            ts=self.ts,
            output_ptr=_text(self.output_ptr),
            files=[f._to_proto() for f in self.files],
            headers=self.headers,
        )

    # -- conveniences ----------------------------------------------------------------------
    def json(self) -> Any:
        """``data`` parsed from JSON (returned as is when it is already a dict or list; a
        `MuxedData` gives a copy of its dict)."""
        return packet_json(self)

    def __copy__(self) -> AIOSPacket:
        return AIOSPacket(
            self.session_id,
            self.seq_no,
            self.data,
            self.ts,
            self.output_ptr,
            self.files,
            self.headers,
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> AIOSPacket:
        return AIOSPacket(
            self.session_id,
            self.seq_no,
            copy.deepcopy(self.data, memo),
            self.ts,
            copy.deepcopy(self.output_ptr, memo),
            [FileInfo(copy.deepcopy(f.metadata, memo), f.file_data) for f in self.files],
            self.headers,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AIOSPacket):
            return NotImplemented
        return self.to_proto() == other.to_proto()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        data = self.data if len(str(self.data)) <= 80 else f"{str(self.data)[:77]}..."
        return (
            f"AIOSPacket(session_id={self.session_id!r}, seq_no={self.seq_no}, data={data!r}, "
            f"ts={self.ts}, output_ptr={self.output_ptr!r}, files={len(self.files)})"
        )


def decode_packet(raw: bytes) -> AIOSPacket:
    """Decode wire bytes into an AIOSPacket; raises PacketDecodeError with the cause."""
    msg = _pb.AIOSPacket()
    try:
        msg.ParseFromString(raw)
    except (DecodeError, TypeError, ValueError) as exc:
        raise PacketDecodeError(f"not a valid AIOSPacket ({len(raw)} bytes): {exc}") from None
    packet = AIOSPacket.__new__(AIOSPacket)
    packet.session_id = session_id = msg.session_id
    packet.seq_no = seq_no = msg.seq_no
    packet.data = msg.data
    packet.ts = ts = msg.ts
    packet.output_ptr = output_ptr = msg.output_ptr
    packet._files = None
    packet._headers = None
    packet._hops = -1
    packet._msg = msg
    packet._parsed = (session_id, seq_no, ts, output_ptr)
    return packet


def encode_output(
    source: AIOSPacket, data: str, files: Iterable[Any] | None = None, min_hops: int = 0
) -> bytes:
    """Serialize an output packet: ``source``'s identity and routing with new ``data``.

    The hot path of every job: builds the protobuf message directly, without an
    intermediate AIOSPacket.
    """
    hops = max(hops_of(source), min_hops) + 1  # min_hops: the input's, when source is new
    msg = source._msg
    if msg is not None and files is None and source._files is None and source._headers is None:
        sid, seq, ts, ptr = source._parsed
        if (
            source.session_id is sid
            and source.seq_no is seq
            and source.ts is ts
            and source.output_ptr is ptr
        ):
            msg.data = data  # the message is this packet's own: nothing else reads it
            # The hop count as one more map entry after the message: a reader keeps the last
            # entry of a key (protobuf's rule for maps), and appending bytes costs less than
            # changing the map (the hot path).
            return msg.SerializeToString() + _hops_entry(hops)
    files = source.files if files is None else _file_list(files)
    return _pb.AIOSPacket(
        session_id=source.session_id,
        seq_no=source.seq_no,
        data=data,
        ts=source.ts,
        output_ptr=_text(source.output_ptr),
        files=[f._to_proto() for f in files] if files else None,
        headers={**source.headers, HOPS_HEADER: str(hops)},
    ).SerializeToString()


def _hops_entry(hops: int) -> bytes:
    """The wire bytes of ``headers["aios-hops"] = str(hops)`` (field 8, a map entry)."""
    if hops < len(_HOPS_ENTRIES):
        return _HOPS_ENTRIES[hops]
    return _entry(hops)


def _entry(hops: int) -> bytes:
    key, value = HOPS_HEADER.encode(), str(hops).encode()
    entry = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value
    return b"\x42" + bytes([len(entry)]) + entry  # every length < 128: one-byte varints


_HOPS_ENTRIES = tuple(_entry(n) for n in range(1024))


def hops_of(packet: AIOSPacket) -> int:
    """How many blocks output this packet or its ancestors: its ``aios-hops`` header (0 when
    there is none; read once). Raises PacketError when the header is not a count."""
    hops = packet._hops
    if hops >= 0:
        return hops
    headers, msg = packet._headers, packet._msg
    if headers is not None:
        value = headers.get(HOPS_HEADER, "")
    else:
        value = msg.headers.get(HOPS_HEADER, "") if msg is not None else ""
    if not value:
        hops = 0
    elif value.isascii() and value.isdigit() and len(value) <= 9:
        hops = int(value)
    else:
        raise PacketError(
            f"header {HOPS_HEADER}={value[:20]!r} is not a hop count",
            session_id=str(packet.session_id),
            seq_no=0,
        )
    packet._hops = hops
    return hops


def packet_json(packet: AIOSPacket) -> Any:
    """Parse ``packet.data``; raises DataDecodeError naming the job when it is not JSON."""
    data = packet.data
    if not isinstance(data, (str, bytes)):
        return data
    if type(data) is MuxedData:
        return data.to_dict()  # orjson reads only exact str/bytes; the dict is already here
    try:
        return _json.loads(data)
    except ValueError as exc:
        raise DataDecodeError(
            f"packet data is not valid JSON: {exc}",
            session_id=packet.session_id,
            seq_no=packet.seq_no,
        ) from None


def make_packet(
    data: Any = None,
    *,
    files: Iterable[Any] = (),
    session_id: str = "",
    seq_no: int = 0,
    ts: float | None = None,
    output_ptr: Any = "",
) -> AIOSPacket:
    """Build a packet from Python values: ``data`` → JSON, files as ``(metadata, bytes)``.

    ``ts`` defaults to now; a dict ``output_ptr`` is JSON-encoded.
    """
    return AIOSPacket(
        session_id=session_id,
        seq_no=seq_no,
        data="" if data is None else _text(data),
        ts=time.time() if ts is None else ts,
        output_ptr=_text(output_ptr),
        files=files,
    )
