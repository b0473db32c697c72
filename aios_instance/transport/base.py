"""Transport interfaces: a *source* claims jobs and acknowledges them once their outputs are
pushed; a *sink* pushes serialized packets to one destination endpoint; a *lease* keeps an
instance's claims its own while it lives.

The interfaces say what happens, not how fast: a source may pipeline its round trips (the
Redis source sends a commit and the next claim together and reads the reply later), but to
its caller every call reads as if it completed in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from ..routing import Destination

__all__ = ["Backlog", "Claim", "Commit", "Lease", "Rejected", "Sink", "Source"]

#: Destinations the server refused (a push that cannot succeed on retry) with the error.
Rejected = Mapping[Destination, str]


class Claim(NamedTuple):
    """A claimed job: its bytes and how many times it has been delivered (1 = first time)."""

    raw: bytes
    attempt: int


def _ignore(rejected: Rejected) -> None:
    """The default ``Commit.settled``: nothing to do once a commit's outcome is known."""


@dataclass(frozen=True, slots=True)
class Commit:
    """What one commit does, atomically: push ``pushes`` (local destinations only), write
    the dead-letter ``records``, acknowledge ``acks`` (claimed jobs, in claim order).

    ``set_aside`` (some of ``acks``) are processed jobs whose outputs still wait for an
    endpoint: they leave the claim but stay this instance's (handed back by a requeue) until
    a later commit acknowledges them by name. So a claim with one such job in it can still be
    acknowledged whole.

    ``settled`` is called once the commit took effect, with the local destinations the
    server rejected (the rest took effect). A source that pipelines may call it later, at
    its next call, but always before anything else it reports.
    """

    pushes: Mapping[Destination, Sequence[bytes]] = field(default_factory=dict)
    acks: Sequence[bytes] = ()
    records: Sequence[bytes] = ()
    settled: Callable[[Rejected], None] = _ignore
    set_aside: Sequence[bytes] = ()


class Sink(Protocol):
    """Pushes serialized packets to lists/endpoints of one destination address."""

    def push(self, batches: Mapping[Destination, Sequence[bytes]]) -> Rejected:
        """Push every payload to its destination in as few round trips as possible.

        Returns the destinations the server *rejected* (a push that cannot succeed on retry,
        e.g. ``WRONGTYPE``) with the error; every other destination was pushed. Raises
        TransportError when the endpoint cannot be reached (nothing is assumed pushed).
        """

    def close(self) -> None:
        """Release connections."""


class Source(Protocol):
    """Claims jobs and acknowledges them; a commit also carries the local pushes."""

    def claim(self, max_count: int, timeout_s: float) -> list[Claim]:
        """Claim up to ``max_count`` jobs, waiting at most ``timeout_s`` for the first.

        Raises TransportError when the source cannot be reached; what it held claimed is
        then handed back to the input (to be served again) before the next claim succeeds.
        """

    def is_local(self, destination: Destination) -> bool:
        """Whether pushes to ``destination`` can ride in a commit (same server)."""

    def commit(self, commit: Commit) -> None:
        """Push, record and acknowledge in one atomic step (see ``Commit``).

        Raises TransportError when nothing took effect (retry the same commit later: a
        repeated acknowledgement is harmless, a repeated push is a duplicate output).
        """

    def release(self, raws: Sequence[bytes]) -> None:
        """Hand claimed, unprocessed jobs back to the front of the input, in order."""

    def stop_claiming(self) -> None:
        """No further claim will come (the caller drains); only sets a flag, so it is safe
        to call from a signal handler."""

    def close(self, *, count_attempts: bool = False) -> None:
        """Hand back what is still claimed and release connections and the lease.

        ``count_attempts``: after a crash, jobs handed back count as one more delivery, so
        one that crashes the process every time reaches its delivery limit.
        """


class Lease(Protocol):
    """An instance's hold on what it claimed: renewed while it lives; the jobs of an
    instance whose lease lapsed are handed back to the input by any other instance."""

    def renew(self) -> None:
        """Extend the lease by its TTL."""

    def requeue_lapsed(self) -> int:
        """Hand back the jobs of instances whose lease lapsed; how many."""


class Backlog(Protocol):
    """What waits in the input, for the autoscaling gauges."""

    def depth(self) -> int:
        """Jobs waiting."""

    def oldest(self) -> bytes | None:
        """The job that waited longest (next to be claimed), or None."""
