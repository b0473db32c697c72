"""The outbox: outputs for endpoints other than the input Redis, and commits the input Redis
could not take.

Remote outputs are pushed one round trip per endpoint. Those an endpoint cannot take now are
*parked* with the inputs they came from, which stay claimed: the endpoint is retried with
exponential backoff (new outputs for it are parked without a try while it backs off) and
the loop keeps serving other packets; past ``delivery_timeout_s`` the inputs are
dead-lettered with the reason. A push the server *rejects* (``WRONGTYPE``: the list name is
another kind of key) cannot succeed on retry and is dead-lettered at once. A commit the
input Redis could not take waits here too, and is retried first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import TransportError
from ..routing import Destination
from ..transport.base import Commit, Rejected, Sink
from .deadletter import DeadLetters, Record
from .hooks import Hooks

__all__ = ["MAX_PARKED", "Delivery", "Outbox"]

MAX_PARKED = 10_000  # outputs held for unreachable endpoints before claiming pauses
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 5.0


@dataclass(eq=False, slots=True)
class Delivery:
    """The remote outputs of one input (or muxed group), by destination, still to push."""

    sources: tuple[bytes, ...]
    pending: dict[Destination, list[bytes]] = field(default_factory=dict)
    first_failure: float = 0.0
    attempts: int = 1  # deliveries of the input, for its dead-letter record


@dataclass(slots=True)
class _Endpoint:
    """Backoff state of an endpoint whose last push failed."""

    backoff_s: float = _BACKOFF_MIN_S / 2
    retry_at: float = 0.0
    error: str = ""


class Outbox:
    """Pushes remote outputs; parks, retries and expires what cannot be pushed yet."""

    def __init__(
        self,
        sink_for: Callable[[Destination], Any],
        records: DeadLetters,
        hooks: Hooks,
        *,
        delivery_timeout_s: float = 30.0,
    ) -> None:
        self._sink_for = sink_for
        self._records = records
        self._hooks = hooks
        self.delivery_timeout_s = delivery_timeout_s
        self._parked: list[Delivery] = []
        self._commits: list[Commit] = []
        self._down: dict[str, _Endpoint] = {}
        self.parked_outputs = 0
        self.next_retry_at = math.inf  # monotonic time parked work needs attention

    @property
    def busy(self) -> bool:
        """Whether anything waits here."""
        return bool(self._parked or self._commits)

    @property
    def deliveries(self) -> int:
        """Parked deliveries and commits."""
        return len(self._parked) + len(self._commits)

    def send(self, deliveries: Sequence[Delivery], now: float) -> tuple[list[bytes], list[Record]]:
        """Push ``deliveries``; park those an endpoint cannot take now. Returns the inputs
        to hold back (not to acknowledge) and the dead-letter records of rejected pushes."""
        records = self._push(deliveries, now)
        held: list[bytes] = []
        for delivery in deliveries:
            if delivery.pending:
                self._parked.append(delivery)
                held.extend(delivery.sources)
        self._refresh()
        return held, records

    def retry(self, now: float) -> tuple[list[bytes], list[Record]]:
        """Retry the parked deliveries whose endpoint is due; dead-letter those past the
        delivery timeout. Returns the inputs now finished (to acknowledge) and records."""
        if not self._parked or now < self.next_retry_at:
            return [], []
        parked, self._parked = self._parked, []
        expiry = now - self.delivery_timeout_s
        records = [self._expire(d) for d in parked if d.first_failure <= expiry]
        records += self._push(parked, now)
        self._parked = [d for d in parked if d.pending]
        self._forget_idle_endpoints()
        self._refresh()
        return [raw for d in parked if not d.pending for raw in d.sources], records

    def park_commit(self, commit: Commit) -> None:
        """A commit the source could not take: retried, in order, before anything else."""
        self._commits.append(commit)
        self.next_retry_at = 0.0

    def resend(self, commit: Callable[[Commit], None]) -> None:
        """Retry the parked commits in order; one that fails again (TransportError) stays
        parked with those after it."""
        if not self._commits:
            return
        while self._commits:
            commit(self._commits[0])
            self._commits.pop(0)
        self._refresh()

    def _push(self, deliveries: Sequence[Delivery], now: float) -> list[Record]:
        """Push pending outputs, one round trip per sink; endpoints backing off are not
        tried. Pushed destinations leave ``pending``; rejected ones become records."""
        batches: dict[int, tuple[Sink, dict[Destination, list[bytes]]]] = {}
        unusable: dict[Destination, str] = {}
        for delivery in deliveries:
            for dest, payloads in delivery.pending.items():
                down = self._down.get(_endpoint(dest))
                if down is not None and down.retry_at > now:
                    continue
                try:
                    sink = self._sink_for(dest)
                except Exception as exc:  # an address no client accepts: retrying can't help
                    unusable[dest] = f"no connection possible: {exc}"
                    continue
                batches.setdefault(id(sink), (sink, {}))[1].setdefault(dest, []).extend(payloads)
        done: dict[Destination, str | None] = dict(unusable)
        for sink, batch in batches.values():
            rejected = self._try(sink, batch, now)
            if rejected is not None:
                done.update(dict.fromkeys(batch))
                done.update(rejected)
        return [record for d in deliveries for record in self._settle(d, done, now)]

    def _try(
        self, sink: Sink, batch: dict[Destination, list[bytes]], now: float
    ) -> Rejected | None:
        """Push one sink's batch: the rejected destinations, or None when unreachable."""
        key = _endpoint(next(iter(batch)))
        try:
            rejected = sink.push(batch)
        except TransportError as exc:
            down = self._down.setdefault(key, _Endpoint())
            down.backoff_s = min(down.backoff_s * 2, _BACKOFF_MAX_S)
            down.retry_at = now + down.backoff_s
            down.error = str(exc)
            self._hooks.delivery_failed(key, exc, sum(len(p) for p in batch.values()))
            return None
        if self._down.pop(key, None) is not None:
            self._hooks.delivery_recovered(key)
        return rejected

    def _settle(
        self, delivery: Delivery, done: dict[Destination, str | None], now: float
    ) -> list[Record]:
        records = []
        for dest in [d for d in delivery.pending if d in done]:
            del delivery.pending[dest]
            error = done[dest]
            if error is not None:
                reason = f"{_endpoint(dest)} rejected the push to {dest.queue_name!r}: {error}"
                records.append(self._undelivered(delivery, reason))
        if delivery.pending and not delivery.first_failure:
            delivery.first_failure = now
        return records

    def _expire(self, delivery: Delivery) -> Record:
        where = sorted({_endpoint(d) for d in delivery.pending})
        errors = sorted({self._down[e].error for e in where if e in self._down})
        reason = (
            f"outputs undeliverable to {', '.join(where)} for "
            f"{self.delivery_timeout_s:g}s: {'; '.join(errors)}"
        )
        delivery.pending.clear()
        return self._undelivered(delivery, reason)

    def _undelivered(self, delivery: Delivery, reason: str) -> Record:
        return self._records.undelivered(delivery.sources, reason, delivery.attempts)

    @staticmethod
    def count(deliveries: Sequence[Delivery]) -> int:
        """Outputs still pending in ``deliveries``."""
        return sum(len(p) for d in deliveries for p in d.pending.values())

    def _forget_idle_endpoints(self) -> None:
        """Backoff state only for endpoints that still have parked outputs: producers name
        endpoints, so the list must not grow with every one that was ever down."""
        waiting = {_endpoint(d) for delivery in self._parked for d in delivery.pending}
        for endpoint in [e for e in self._down if e not in waiting]:
            del self._down[endpoint]

    def _refresh(self) -> None:
        """Recount parked outputs and when the next retry or expiry is due."""
        due, count = (0.0 if self._commits else math.inf), 0
        for delivery in self._parked:
            count += sum(len(p) for p in delivery.pending.values())
            due = min(due, delivery.first_failure + self.delivery_timeout_s)
            for dest in delivery.pending:
                down = self._down.get(_endpoint(dest))
                due = min(due, down.retry_at if down is not None else 0.0)
        self.next_retry_at, self.parked_outputs = due, count


def _endpoint(dest: Destination) -> str:
    return dest.host if dest.kind == "grpc" else f"{dest.host}:{dest.port}/{dest.db}"
