"""Transport interfaces: a *source* claims jobs and acknowledges them once their outputs are
pushed; a *sink* pushes serialized packets to one destination endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from ..routing import Destination

__all__ = ["Claim", "Sent", "Sink", "Source"]


class Claim(NamedTuple):
    """A claimed job: its bytes and how many times it has been delivered (1 = first time)."""

    raw: bytes
    attempt: int


class Sent(NamedTuple):
    """A commit sent and not yet finished: the destinations of its pushes in order (None
    for an acknowledgement) and how many commands it queued."""

    order: tuple[Destination | None, ...]
    queued: int
    acked: tuple[bytes, ...] = ()  # the claim it acknowledges by position


class Sink(Protocol):
    """Pushes serialized packets to lists/endpoints of one destination address."""

    def push(self, batches: Mapping[Destination, Sequence[bytes]]) -> Mapping[Destination, str]:
        """Push every payload to its destination in as few round trips as possible.

        Returns the destinations the server *rejected* (a push that cannot succeed on retry,
        e.g. ``WRONGTYPE``) with the error; every other destination was pushed. Raises
        TransportError when the endpoint cannot be reached (nothing is assumed pushed).
        """

    def close(self) -> None:
        """Release connections."""


class Source(Protocol):
    """Claims jobs and acknowledges them; the commit also carries local pushes."""

    def claim(self, max_count: int, timeout_s: float) -> list[Claim]:
        """Claim up to ``max_count`` jobs, waiting at most ``timeout_s`` for the first."""

    def is_local(self, destination: Destination) -> bool:
        """Whether pushes to ``destination`` can ride in the same round trip as the ack."""

    def commit(
        self,
        pushes: Mapping[Destination, Sequence[bytes]],
        acks: Sequence[bytes],
        dead: Sequence[bytes],
        *,
        latest: Sequence[bytes] = (),
        oldest: Sequence[bytes] = (),
    ) -> Mapping[Destination, str]:
        """Atomically push local outputs and dead letters and acknowledge ``acks``.

        ``latest``/``oldest`` (a whole claim, its jobs in claim order) are acknowledged too,
        by position where the transport can (the claim made last / the oldest one still
        held), by name where the position does not hold.
        Returns the local destinations the server rejected (the rest of the commit, acks
        included, took effect). Raises TransportError when nothing took effect.
        """

    def send_commit_and_claim(
        self,
        pushes: Mapping[Destination, Sequence[bytes]],
        oldest: Sequence[bytes],
        max_count: int,
    ) -> Sent:
        """Start, without waiting, one atomic commit of ``pushes`` that acknowledges the
        claim ``oldest`` (the oldest still held, jobs in claim order) and claims up to
        ``max_count`` more."""

    def finish(self, sent: Sent) -> tuple[Mapping[Destination, str], list[Claim]]:
        """Wait for a sent commit: rejected local destinations and the new claim. Raises
        TransportError when its outcome is unknown."""

    def requeue_own(self) -> int:
        """Hand every job this instance holds claimed back to the input (outcome unknown)."""

    def release(self, raws: Sequence[bytes]) -> None:
        """Hand claimed, unprocessed jobs back to the front of the input (shutdown)."""

    def close(self, *, count_attempts: bool = False) -> None:
        """Release connections and this instance's lease, handing back what is claimed
        (``count_attempts``: as one more delivery, after a crash)."""
