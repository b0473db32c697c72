"""The exception tree of aios-instance.

::

    AIOSError                      base of everything this package raises on purpose
    ├── ConfigError                a setting or block data is missing or invalid (raised at start)
    ├── PacketError                a job cannot be handled as given (carries session_id/seq_no)
    │   ├── PacketDecodeError      bytes that are not a valid AIOSPacket
    │   └── DataDecodeError        packet.data that is not valid JSON
    ├── RoutingError               an output_ptr that cannot be turned into destinations
    ├── TransportError             a queue or downstream endpoint could not be reached
    ├── UpdateResultError          on_update accepted an update with a value that is not JSON
    ├── ParameterLimitError        an update would grow the parameters past their bounds
    ├── UnknownMetricError         a metric update names a metric never registered
    └── BlockTestError             BlockTester.run(..., raise_errors=True): the block failed

Some also derive from the builtin their callers caught before they joined the tree
(``UpdateResultError`` is a ``ValueError``; ``UnknownMetricError`` a ``KeyError`` and a
``ValueError``), so existing ``except`` clauses keep working. Each is re-exported from the
module that raises it (``control.params``, ``metrics``, ``testing``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "AIOSError",
    "BlockTestError",
    "ConfigError",
    "DataDecodeError",
    "PacketDecodeError",
    "PacketError",
    "ParameterLimitError",
    "RoutingError",
    "TransportError",
    "UnknownMetricError",
    "UpdateResultError",
]


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


class UpdateResultError(AIOSError, ValueError):
    """``on_update`` accepted an update but returned a value that cannot be sent as JSON.

    Raised before anything is merged: the parameters are unchanged. ``POST /setParameters``
    answers 500; the ``PARAMETER_UPDATES`` listener dead-letters the update.
    """


class ParameterLimitError(AIOSError, ValueError):
    """An accepted parameter update would grow the parameters past their bounds (keys or
    bytes as JSON). Nothing is merged. ``POST /setParameters`` answers 413; the
    ``PARAMETER_UPDATES`` listener dead-letters the update."""


class UnknownMetricError(AIOSError, KeyError, ValueError):
    """An update names a metric that was never registered (catchable as KeyError or ValueError)."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return self.message


class BlockTestError(AIOSError):
    """Raised by ``BlockTester.run(..., raise_errors=True)`` when the block failed a job.

    ``failures`` are the pipeline's ``Failure`` values (``outcome``, ``stage``, ``reason``,
    ``session_id``, ``seq_no``, ...); the message describes the first.
    """

    def __init__(self, failures: Iterable[Any]) -> None:
        self.failures = tuple(failures)
        first = self.failures[0]
        super().__init__(
            f"{first.outcome.value} in {first.stage}: {first.reason}",
            session_id=first.session_id,
            seq_no=first.seq_no,
        )
