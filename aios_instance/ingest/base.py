"""What the in-process ingest asks of the runtime: an ``Invoker`` runs one packet through
the block's pipeline and says what came of it (a ``Reply``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..packet import AIOSPacket

__all__ = ["Invoker", "Reply"]


@dataclass(frozen=True, slots=True)
class Reply:
    """What one packet came to: its outputs (each the JSON text of an output's data), how
    many entries were held (a batch or group not complete yet), whether it was queued
    instead (a block with a Muxer), and the first failure, if any."""

    outputs: tuple[str, ...] = ()
    held: int = 0
    queued: bool = False
    outcome: str = ""  # the failure's outcome (bad_input, user_error, ...); "" when none
    reason: str = ""
    raised: bool = False  # the failure was an exception in user code (not a refusal)

    @property
    def failed(self) -> bool:
        return bool(self.outcome)


class Invoker(Protocol):
    """Runs jobs that came in by HTTP or WebSocket (thread-safe; blocks while user code runs)."""

    def invoke(self, packet: AIOSPacket, *, ingress: str, is_ws: bool = False) -> Reply:
        """Run ``packet`` through the pipeline (or enqueue it, for a muxer block); failures
        are dead-lettered and counted as for queue traffic."""

    def timed_out(self, packet: AIOSPacket, *, ingress: str, after_s: float) -> None:
        """The caller stopped waiting for ``packet`` after ``after_s`` (a dead letter)."""
