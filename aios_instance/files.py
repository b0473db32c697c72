"""`FileInfo` and `FileList`: the files attached to a packet (``AIOSPacket.files``).

A file is JSON ``metadata`` and raw ``file_data`` bytes. ``FileList`` converts whatever goes in
(a FileInfo, a ``(metadata, bytes)`` tuple, a generated protobuf FileInfo) and offers
protobuf's ``add(...)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, SupportsIndex

from . import _json
from ._proto import aios_packet_pb2 as _pb

__all__ = ["FileInfo", "FileList"]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _json.dumps(value)


class FileInfo:
    """A file attached to a packet: JSON ``metadata`` and raw ``file_data`` bytes."""

    __slots__ = ("file_data", "metadata")

    def __init__(self, metadata: str | Mapping[str, Any] = "", file_data: bytes = b"") -> None:
        self.metadata: str | Mapping[str, Any] = metadata
        self.file_data: bytes = file_data

    def metadata_dict(self) -> Any:
        """The metadata parsed from JSON (``{}`` when empty)."""
        if not isinstance(self.metadata, str):
            return self.metadata
        return _json.loads(self.metadata) if self.metadata else {}

    def _to_proto(self) -> _pb.FileInfo:
        return _pb.FileInfo(metadata=_text(self.metadata), file_data=bytes(self.file_data))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileInfo):
            return NotImplemented
        return _text(self.metadata) == _text(other.metadata) and self.file_data == other.file_data

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"FileInfo(metadata={self.metadata!r}, file_data=<{len(self.file_data)} bytes>)"


def _file_info(item: Any) -> FileInfo:
    """A FileInfo from a FileInfo, a generated protobuf FileInfo or a (metadata, bytes) tuple."""
    if isinstance(item, FileInfo):
        return item
    if isinstance(item, _pb.FileInfo):
        return FileInfo(item.metadata, item.file_data)
    metadata: Any
    file_data: Any
    try:
        metadata, file_data = item  # the (metadata, bytes) tuple form
    except (TypeError, ValueError):
        metadata = file_data = None
    if not isinstance(file_data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"a packet file must be a FileInfo or a (metadata, bytes) tuple, got {item!r:.80}"
        )
    return FileInfo(metadata, bytes(file_data))


class FileList(list[FileInfo]):
    """The ``files`` of a packet: a list that also offers protobuf's ``add(...)``.

    Whatever goes in (the constructor, ``append``, ``extend``, ``insert``, ``+=``, item and
    slice assignment) is converted like ``packet.files = ...``: a FileInfo stays as is, a
    ``(metadata, bytes)`` tuple or a generated protobuf FileInfo becomes a FileInfo.
    """

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__(map(_file_info, items))

    def add(self, metadata: str | Mapping[str, Any] = "", file_data: bytes = b"") -> FileInfo:
        """Append a new FileInfo and return it."""
        info = FileInfo(metadata, file_data)
        super().append(info)
        return info

    def append(self, item: Any) -> None:
        """Append a file (FileInfo or ``(metadata, bytes)``)."""
        super().append(_file_info(item))

    def extend(self, items: Iterable[Any]) -> None:
        """Append every file of ``items``."""
        super().extend(map(_file_info, items))

    def insert(self, index: SupportsIndex, item: Any) -> None:
        """Insert a file before ``index``."""
        super().insert(index, _file_info(item))

    def __iadd__(self, items: Iterable[Any]) -> FileList:  # type: ignore[override,misc]
        self.extend(items)
        return self

    def __setitem__(self, index: SupportsIndex | slice, value: Any) -> None:
        if isinstance(index, slice):
            super().__setitem__(index, [_file_info(item) for item in value])
        else:
            super().__setitem__(index, _file_info(value))


def _file_list(files: Iterable[Any]) -> FileList:
    return FileList(files)
