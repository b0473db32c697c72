"""In-memory transport: the same source/sink contract as Redis, inside one process.

Useful to embed a block in another program or to test a worker without a server. Claimed
packets stay in ``processing`` until committed, exactly like the Redis source.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence

from ..errors import TransportError
from ..routing import Destination
from .base import Claim, Sent

__all__ = ["MemorySink", "MemorySource"]


class MemorySource:
    """A FIFO input with a processing list; ``lists`` holds local pushes and dead letters."""

    def __init__(self, block_id: str = "block") -> None:
        self.block_id = block_id
        self.inputs: deque[bytes] = deque()
        self.processing: list[bytes] = []
        self.lists: dict[str, deque[bytes]] = defaultdict(deque)
        self.dead: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._sent: list[list[Claim]] = []

    def put(self, raw: bytes) -> None:
        """Enqueue a job (what a producer's LPUSH does)."""
        with self._cond:
            self.inputs.append(raw)
            self._cond.notify()

    def claim(self, max_count: int, timeout_s: float) -> list[Claim]:
        """Claim up to max_count jobs, waiting up to timeout_s for the first."""
        with self._cond:
            if not self.inputs and timeout_s > 0:
                self._cond.wait(timeout_s)
            out: list[Claim] = []
            while self.inputs and len(out) < max_count:
                raw = self.inputs.popleft()
                self.processing.append(raw)
                out.append(Claim(raw, 1))
            return out

    def is_local(self, destination: Destination) -> bool:
        """Every redis destination is local: its list lives in ``lists``."""
        return destination.kind == "redis"

    def commit(
        self,
        pushes: Mapping[Destination, Sequence[bytes]],
        acks: Sequence[bytes],
        dead: Sequence[bytes],
        *,
        latest: Sequence[bytes] = (),
        oldest: Sequence[bytes] = (),
    ) -> Mapping[Destination, str]:
        """Record pushes and dead letters, then drop the acknowledged jobs."""
        with self._cond:
            for raw in (*latest, *oldest):  # by name: memory has no positions to trust
                if raw in self.processing:
                    self.processing.remove(raw)
            for dest, payloads in pushes.items():
                self.lists[dest.queue_name].extend(payloads)
            self.dead.extend(dead)
            for raw in acks:
                if raw in self.processing:  # like LREM: acknowledging twice is harmless
                    self.processing.remove(raw)
        return {}

    def send_commit_and_claim(
        self,
        pushes: Mapping[Destination, Sequence[bytes]],
        oldest: Sequence[bytes],
        max_count: int,
    ) -> Sent:
        """Commit and claim now; finish() answers."""
        self.commit(pushes, (), (), oldest=oldest)
        self._sent.append(self.claim(max_count, 0))
        return Sent((), 0)

    def finish(self, sent: Sent) -> tuple[Mapping[Destination, str], list[Claim]]:
        """The claim made by the matching send."""
        return {}, self._sent.pop(0)

    def requeue_own(self) -> int:
        """Put every claimed job back at the front."""
        with self._cond:
            held, self.processing = self.processing, []
            self.inputs.extendleft(reversed(held))
            return len(held)

    def release(self, raws: Sequence[bytes]) -> None:
        """Put claimed jobs back at the front, in order."""
        with self._cond:
            for raw in reversed(raws):
                if raw in self.processing:
                    self.processing.remove(raw)
                    self.inputs.appendleft(raw)

    def close(self, *, count_attempts: bool = False) -> None:
        """Nothing to release."""


class MemorySink:
    """A sink that appends payloads to in-memory lists by queue name."""

    def __init__(self) -> None:
        self.lists: dict[str, list[bytes]] = defaultdict(list)
        self.fail = False  # set to simulate an unreachable endpoint
        self.attempts = 0  # push calls, failed ones included

    def push(self, batches: Mapping[Destination, Sequence[bytes]]) -> Mapping[Destination, str]:
        """Append, or raise TransportError while ``fail`` is set."""
        self.attempts += 1
        if self.fail:
            raise TransportError("memory sink set to fail")
        for dest, payloads in batches.items():
            self.lists[dest.queue_name].extend(payloads)
        return {}

    def close(self) -> None:
        """Nothing to release."""
