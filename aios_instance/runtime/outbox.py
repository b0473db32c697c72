"""The outbox: outputs for endpoints other than the input Redis, and commits the input Redis
could not take.

Remote outputs are pushed one round trip per endpoint, on the endpoint's own sender thread
(``senders.py``), one push at a time per endpoint; the worker waits for a push at most
``push_wait_s``, and not at all for an endpoint that failed or is slow, so a silent or down
endpoint holds up only the outputs routed to it. Outputs an endpoint has not taken yet are
*parked* with the inputs they came from, which stay claimed: an endpoint that failed is
retried with exponential backoff (new outputs for it are parked without a try while it backs
off) and the loop keeps serving other packets; past ``delivery_timeout_s`` the inputs are
dead-lettered with the reason. A push the server *rejects* (``WRONGTYPE``: the list name is
another kind of key) cannot succeed on retry and is dead-lettered at once. A commit the input
Redis could not take waits here too, and is retried first.

Bounds: while ``MAX_PARKED`` outputs or ``MAX_PARKED_BYTES`` are parked, new outputs for an
endpoint that failed are dead-lettered at once; the worker stops claiming while more than
``MAX_PARKED`` outputs wait for endpoints that have not failed (backpressure from a slow but
working downstream).
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import TransportError
from ..routing import Destination
from ..transport.base import Commit, Rejected
from .deadletter import DeadLetters, Record
from .hooks import Hooks
from .senders import Senders

__all__ = ["MAX_PARKED", "MAX_PARKED_BYTES", "Delivery", "Outbox"]

MAX_PARKED = 10_000  # parked outputs (see the module's docstring)
MAX_PARKED_BYTES = 256 << 20
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 5.0
_POLL_S = 0.05  # how often the loop looks at pushes in progress


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


@dataclass(eq=False, slots=True)
class _Flight:
    """A push in progress on an endpoint's sender."""

    future: concurrent.futures.Future[Rejected]
    batch: dict[Destination, list[bytes]]
    members: list[Delivery]  # the deliveries of the round it was started in
    started: float  # on the outbox's clock (the backoff counts from the try)
    round: int  # the _push call that started it


class Outbox:
    """Pushes remote outputs; parks, retries and expires what cannot be pushed yet."""

    def __init__(
        self,
        sink_for: Callable[[Destination], Any],
        records: DeadLetters,
        hooks: Hooks,
        *,
        delivery_timeout_s: float = 30.0,
        push_wait_s: float = 0.05,
    ) -> None:
        self._sink_for = sink_for
        self._records = records
        self._hooks = hooks
        self.delivery_timeout_s = delivery_timeout_s
        self.push_wait_s = push_wait_s
        self._parked: list[Delivery] = []
        self._commits: list[Commit] = []
        self._down: dict[str, _Endpoint] = {}
        self._flights: dict[str, _Flight] = {}
        self._senders = Senders()
        self.parked_outputs = 0
        self.parked_bytes = 0
        self.answering_outputs = 0  # parked for endpoints that have not failed (slow ones)
        self.answering_bytes = 0
        self._parked_keys: set[str] = set()  # endpoints with parked outputs (new ones queue)
        self._starved: set[str] = set()  # endpoints no sender could be had for, this round
        self._due_at = math.inf  # when parked work is due (a retry, an expiry); polls aside
        self._round = 0  # calls of _push: a push started in an earlier one carries parked work
        self.next_retry_at = math.inf  # monotonic time parked work needs attention

    @property
    def busy(self) -> bool:
        """Whether anything waits here."""
        return bool(self._parked or self._commits)

    @property
    def deliveries(self) -> int:
        """Parked deliveries and commits."""
        return len(self._parked) + len(self._commits)

    @property
    def backpressure(self) -> bool:
        """Whether claiming should pause: too much waits for endpoints that do answer."""
        return self.answering_outputs > MAX_PARKED or self.answering_bytes > MAX_PARKED_BYTES

    @property
    def endpoints(self) -> int:
        """Endpoints with a sender (their threads end when idle)."""
        return len(self._senders)

    def send(self, deliveries: Sequence[Delivery], now: float) -> tuple[list[bytes], list[Record]]:
        """Push ``deliveries``, waiting up to ``push_wait_s`` for endpoints that answer; park
        the rest. Returns the inputs to hold back (not to acknowledge) and the dead-letter
        records of rejected or refused pushes."""
        records = self._push(deliveries, now, fresh=True)
        parked = [d for d in deliveries if d.pending]
        if parked:
            self._parked += parked
            self._count(parked, now, add=True)  # not a recount: the hot path, O(batch)
        return [raw for d in parked for raw in d.sources], records

    def retry(self, now: float) -> tuple[list[bytes], list[Record]]:
        """Land finished pushes, retry the parked deliveries whose endpoint is due,
        dead-letter those past the delivery timeout. Returns the inputs now finished (to
        acknowledge) and records."""
        if not self._parked:
            return [], []
        if now < self._due_at and not self._landed():
            # Nothing due, no push finished: a cheap look, not a pass over everything parked.
            if self.next_retry_at <= now:
                self.next_retry_at = min(self._due_at, now + _POLL_S)
            return [], []
        parked, self._parked = self._parked, []
        expiry = now - self.delivery_timeout_s
        records = [self._expire(d) for d in parked if d.pending and d.first_failure <= expiry]
        records += self._push(parked, now, fresh=False)
        self._parked = [d for d in parked if d.pending]
        self._forget_idle_endpoints()
        self._refresh(now)
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
        self.next_retry_at = 0.0 if self._parked else math.inf  # recomputed by retry()

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the pushes in progress to finish (they are settled by
        the next ``retry``); whether they all did."""
        futures = [f.future for f in self._flights.values()]
        return not futures or not concurrent.futures.wait(futures, timeout=timeout_s).not_done

    def close(self) -> None:
        """Stop the senders (a push in progress is not waited for)."""
        self._senders.close()

    # -- pushing ---------------------------------------------------------------------------
    def _push(self, deliveries: Sequence[Delivery], now: float, *, fresh: bool) -> list[Record]:
        """Start a push per endpoint that is free and due and settle every push that
        finished; for ``fresh`` deliveries (not parked yet) wait for the endpoints that have
        not failed. Pushed destinations leave ``pending``; rejected or unusable ones become
        records."""
        self._round += 1
        self._starved = set()
        records = self._land(now)  # a finished push frees its endpoint for the next one
        batches: dict[str, tuple[Any, dict[Destination, list[bytes]]]] = {}
        plan: dict[Destination, list[bytes] | str | None] = {}  # resolved once per destination
        full = self.parked_outputs >= MAX_PARKED or self.parked_bytes >= MAX_PARKED_BYTES
        for delivery in deliveries:
            if full and fresh and self._refused(delivery, records):
                continue
            unusable = None
            for dest, payloads in delivery.pending.items():
                target = plan.get(dest, _UNSEEN)
                if target is _UNSEEN:
                    target = plan[dest] = self._target(dest, now, batches, fresh)
                if type(target) is list:
                    target.extend(payloads)
                elif target is not None:
                    unusable = unusable or {}
                    unusable[dest] = target
            if unusable:
                records += self._unusable(delivery, unusable)
        waited = self._start(batches, deliveries, now)
        if fresh and waited:
            concurrent.futures.wait(waited, timeout=self.push_wait_s)
        records += self._land(now)
        for delivery in deliveries:
            if delivery.pending and not delivery.first_failure:
                delivery.first_failure = now
        return records

    def _target(
        self,
        dest: Destination,
        now: float,
        batches: dict[str, tuple[Any, dict[Destination, list[bytes]]]],
        fresh: bool,
    ) -> list[bytes] | str | None:
        """Where ``dest``'s outputs go in this round: the list of its endpoint's batch; None
        when the endpoint is busy with a push or backing off (they wait); the reason when no
        client can be made for the address (retrying cannot help)."""
        key = _endpoint(dest)
        if fresh and key in self._parked_keys:
            return None  # older outputs for it are parked: these go after them, in order
        if key in self._flights:
            return None  # one push at a time per endpoint: its order is kept
        down = self._down.get(key)
        if down is not None and down.retry_at > now:
            return None
        try:
            sink = self._sink_for(dest)
        except Exception as exc:
            return f"{key}: no connection possible: {exc}"
        entry = batches.get(key)
        if entry is None:
            entry = batches[key] = (sink, {})
        elif entry[0] is not sink:
            return None  # another client for the same server (a password): next round
        return entry[1].setdefault(dest, [])

    def _unusable(self, delivery: Delivery, reasons: dict[Destination, str]) -> list[Record]:
        for dest in reasons:
            del delivery.pending[dest]
        return [self._undelivered(delivery, reason) for reason in sorted(set(reasons.values()))]

    def _refused(self, delivery: Delivery, records: list[Record]) -> bool:
        """The outbox is full: a new delivery to an endpoint that failed is dead-lettered at
        once (a producer must not fill memory through ``output_ptr``)."""
        bad = sorted({_endpoint(d) for d in delivery.pending if _endpoint(d) in self._down})
        if not bad:
            return False
        reason = (
            f"outputs for {', '.join(bad)} refused: {self.parked_outputs} outputs "
            f"({self.parked_bytes} bytes) already wait for endpoints that failed "
            f"(bounds: {MAX_PARKED} outputs, {MAX_PARKED_BYTES} bytes)"
        )
        delivery.pending.clear()
        records.append(self._undelivered(delivery, reason))
        return True

    def _start(
        self,
        batches: dict[str, tuple[Any, dict[Destination, list[bytes]]]],
        deliveries: Sequence[Delivery],
        now: float,
    ) -> list[concurrent.futures.Future[Rejected]]:
        """Hand each endpoint's batch to its sender; the futures worth waiting for. Every
        delivery with a destination in a batch had its outputs put in it, so the deliveries
        of the round are the members of each push."""
        waited = []
        members = list(deliveries)
        for key, (sink, batch) in batches.items():
            sender = self._senders.get(key, self._flights.__contains__)
            if sender is None:
                self._starved.add(key)  # every sender is busy: the outputs wait a little
                continue
            future = sender.submit(functools.partial(sink.push, batch))
            self._flights[key] = _Flight(future, batch, members, now, self._round)
            if key not in self._down:  # an endpoint that failed is not waited for
                waited.append(future)
        return waited

    def _landed(self) -> bool:
        return any(f.future.done() for f in self._flights.values())

    def _land(self, now: float) -> list[Record]:
        """Settle the pushes that finished: backoff for a failed one, records for rejected
        destinations, and the pushed destinations out of their deliveries' ``pending``."""
        records: list[Record] = []
        for key, flight in [(k, f) for k, f in self._flights.items() if f.future.done()]:
            del self._flights[key]
            error = flight.future.exception()
            if error is not None:
                self._failed(key, flight, error, now)
                continue
            rejected = flight.future.result()
            if flight.round != self._round:
                # It finished parked deliveries: retry() acknowledges them.
                self.next_retry_at = self._due_at = 0.0
            if self._down.pop(key, None) is not None:
                self._hooks.delivery_recovered(key)
            for delivery in flight.members:
                for dest in flight.batch:
                    if delivery.pending.pop(dest, None) is not None and dest in rejected:
                        reason = f"{key} rejected the push to {dest.queue_name!r}: {rejected[dest]}"
                        records.append(self._undelivered(delivery, reason))
        return records

    def _failed(self, key: str, flight: _Flight, error: BaseException, now: float) -> None:
        down = self._down.setdefault(key, _Endpoint())
        down.backoff_s = min(down.backoff_s * 2, _BACKOFF_MAX_S)
        down.retry_at = flight.started + down.backoff_s
        # Its parked outputs are due again then (they were only polled while it was pushing).
        self._due_at = min(self._due_at, down.retry_at)
        self.next_retry_at = min(self.next_retry_at, down.retry_at)
        down.error = str(error)
        exc = error if isinstance(error, Exception) else TransportError(str(error))
        self._hooks.delivery_failed(key, exc, sum(len(p) for p in flight.batch.values()))

    def _expire(self, delivery: Delivery) -> Record:
        where = sorted({_endpoint(d) for d in delivery.pending})
        errors = sorted({self._down[e].error for e in where if e in self._down})
        still = [e for e in where if e in self._flights and e not in self._down]
        if still:
            errors.append(f"no answer from {', '.join(still)}")
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

    def _refresh(self, now: float) -> None:
        """Recount parked outputs and bytes, and when the next retry or expiry is due."""
        self.next_retry_at = self._due_at = 0.0 if self._commits else math.inf
        self._count(self._parked, now, add=False)

    def _count(self, deliveries: Sequence[Delivery], now: float, *, add: bool) -> None:
        """Count ``deliveries`` in (``add``) or as all there is, note their endpoints, and
        bring the next retry or expiry forward to what they need."""
        due, count, size, answering, answering_size = self._due_at, 0, 0, 0, 0
        poll = False
        keys = self._parked_keys if add else set()
        for delivery in deliveries:
            if not delivery.pending:
                due = 0.0  # finished meanwhile: to acknowledge
                continue
            due = min(due, delivery.first_failure + self.delivery_timeout_s)
            for dest, payloads in delivery.pending.items():
                key = _endpoint(dest)
                keys.add(key)
                n, nbytes = len(payloads), sum(map(len, payloads))
                count, size = count + n, size + nbytes
                if key in self._flights or key in self._starved:
                    poll = True  # look again soon whether it finished; never a busy loop
                else:
                    down = self._down.get(key)
                    due = min(due, down.retry_at if down is not None else 0.0)
                if key not in self._down:
                    answering, answering_size = answering + n, answering_size + nbytes
        self._due_at, self._parked_keys = due, keys
        self.next_retry_at = min(due, now + _POLL_S) if poll else due
        if add:
            count += self.parked_outputs
            size += self.parked_bytes
            answering += self.answering_outputs
            answering_size += self.answering_bytes
        self.parked_outputs, self.parked_bytes = count, size
        self.answering_outputs, self.answering_bytes = answering, answering_size


_UNSEEN: Any = object()


def _endpoint(dest: Destination) -> str:
    return dest.host if dest.kind == "grpc" else f"{dest.host}:{dest.port}/{dest.db}"
