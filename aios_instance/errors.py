"""The exception tree of aios-instance.

::

    AIOSError                      base of everything this package raises on purpose
    ├── ConfigError                a setting or block data is missing or invalid (raised at start)
    ├── PacketError                a job cannot be handled as given (carries session_id/seq_no)
    │   ├── PacketDecodeError      bytes that are not a valid AIOSPacket
    │   └── DataDecodeError        packet.data that is not valid JSON
    ├── RoutingError               an output_ptr that cannot be turned into destinations
    └── TransportError             a queue or downstream endpoint could not be reached
        └── AckPendingError        a commit took effect but its acknowledgement did not
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class AIOSError(Exception):
    """Base class; every error carries the job it concerns where there is one."""

    def __init__(self, message: str, *, session_id: str = "", seq_no: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.session_id = session_id
        self.seq_no = seq_no


class ConfigError(AIOSError):
    """A setting, environment variable or block-data document is invalid."""


class PacketError(AIOSError):
    """A job cannot be handled as given."""


class PacketDecodeError(PacketError):
    """The bytes are not a valid serialized AIOSPacket."""


class DataDecodeError(PacketError):
    """`packet.data` is not valid JSON."""


class RoutingError(AIOSError):
    """An `output_ptr` is malformed or names no usable destination."""


class TransportError(AIOSError):
    """A queue or a downstream endpoint could not be reached."""


class AckPendingError(TransportError):
    """A commit took effect (its pushes, its claim) but acknowledging ``raws`` did not: the
    connection failed in between. Only the acknowledgement is to be retried. ``claims`` is
    what the same commit claimed (held now) and ``rejected`` its rejected destinations."""

    def __init__(
        self,
        message: str,
        raws: tuple[bytes, ...],
        claims: list[Any],
        rejected: Mapping[Any, str],
    ) -> None:
        super().__init__(message)
        self.raws = raws
        self.claims = claims
        self.rejected = rejected
