"""In-memory transport: the same source/sink contract as Redis, inside one process.

Useful to embed a block in another program or to test a worker without a server. Claimed
jobs stay in ``processing`` until committed or released, exactly like the Redis source;
``crash()`` hands them back as a lapsed lease would, counting a delivery, so the
delivery limit can be exercised without a server.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque
from collections.abc import Mapping, Sequence

from ..errors import TransportError
from ..routing import Destination
from .base import Claim, Commit, Rejected

__all__ = ["MemoryLease", "MemorySink", "MemorySource"]


class MemoryLease:
    """Nothing else can take a memory source's jobs over: the lease always holds."""

    def renew(self) -> None:
        """Nothing to renew."""

    def requeue_lapsed(self) -> int:
        """No other instance: nothing lapses."""
        return 0


class MemorySource:
    """A FIFO input with a processing list; ``lists`` holds local pushes, ``dead`` the
    dead-letter records."""

    def __init__(self, block_id: str = "block") -> None:
        self.block_id = block_id
        self.inputs: deque[bytes] = deque()
        self.processing: list[bytes] = []
        self.lists: dict[str, deque[bytes]] = defaultdict(deque)
        self.dead: deque[bytes] = deque()
        self.lease = MemoryLease()
        self.backlog = self
        self.fail = False  # set to simulate an unreachable server
        self._attempts: Counter[bytes] = Counter()  # deliveries before this one
        self._cond = threading.Condition()

    def put(self, raw: bytes) -> None:
        """Enqueue a job (what a producer's LPUSH does)."""
        with self._cond:
            self.inputs.append(raw)
            self._cond.notify()

    def claim(self, max_count: int, timeout_s: float) -> list[Claim]:
        """Claim up to max_count jobs, waiting up to timeout_s for the first."""
        self._check()
        with self._cond:
            if not self.inputs and timeout_s > 0:
                self._cond.wait(timeout_s)
            out: list[Claim] = []
            while self.inputs and len(out) < max_count:
                raw = self.inputs.popleft()
                self.processing.append(raw)
                out.append(Claim(raw, 1 + self._attempts[raw]))
            return out

    def is_local(self, destination: Destination) -> bool:
        """Every redis destination is local: its list lives in ``lists``."""
        return destination.kind == "redis"

    def commit(self, commit: Commit) -> None:
        """Record pushes and dead letters, then drop the acknowledged jobs."""
        self._check()
        with self._cond:
            for dest, payloads in commit.pushes.items():
                self.lists[dest.queue_name].extend(payloads)
            self.dead.extend(commit.records)
            aside = Counter(commit.set_aside)
            for raw in commit.acks:
                if aside[raw] > 0:
                    aside[raw] -= 1
                    continue  # kept claimed here (no positional acknowledgement to spare)
                if raw in self.processing:  # like LREM: acknowledging twice is harmless
                    self.processing.remove(raw)
                    self._attempts.pop(raw, None)
        commit.settled({})

    def release(self, raws: Sequence[bytes]) -> None:
        """Put claimed jobs back at the front, in order."""
        with self._cond:
            for raw in reversed(raws):
                if raw in self.processing:
                    self.processing.remove(raw)
                    self.inputs.appendleft(raw)

    def stop_claiming(self) -> None:
        """Nothing is claimed ahead here: nothing to do."""

    def crash(self) -> int:
        """Hand every claimed job back at the front as one more delivery (what another
        instance does when this one's lease lapses); how many."""
        with self._cond:
            held, self.processing = self.processing, []
            self._attempts.update(held)
            self.inputs.extendleft(reversed(held))
            return len(held)

    def close(self, *, count_attempts: bool = False) -> None:
        """Hand back whatever is still claimed."""
        with self._cond:
            held, self.processing = self.processing, []
            if count_attempts:
                self._attempts.update(held)
            self.inputs.extendleft(reversed(held))

    def depth(self) -> int:
        """Jobs waiting."""
        return len(self.inputs)

    def oldest(self) -> bytes | None:
        """The job claimed next, or None."""
        return self.inputs[0] if self.inputs else None

    def _check(self) -> None:
        if self.fail:
            raise TransportError("memory source set to fail")


class MemorySink:
    """A sink that appends payloads to in-memory lists by queue name."""

    def __init__(self) -> None:
        self.lists: dict[str, list[bytes]] = defaultdict(list)
        self.fail = False  # set to simulate an unreachable endpoint
        self.rejecting: dict[str, str] = {}  # queue name -> the error its push gets
        self.attempts = 0  # push calls, failed ones included

    def push(self, batches: Mapping[Destination, Sequence[bytes]]) -> Rejected:
        """Append, or raise TransportError while ``fail`` is set."""
        self.attempts += 1
        if self.fail:
            raise TransportError("memory sink set to fail")
        rejected: dict[Destination, str] = {}
        for dest, payloads in batches.items():
            error = self.rejecting.get(dest.queue_name)
            if error is not None:
                rejected[dest] = error
            else:
                self.lists[dest.queue_name].extend(payloads)
        return rejected

    def close(self) -> None:
        """Nothing to release."""
