"""The processing loop: claim → pipeline → push → acknowledge, with nothing lost on the way.

One step claims up to K packets, runs them through the pipeline and commits: remote outputs
are pushed first (the ``Outbox``: one round trip per endpoint, parking what an endpoint
cannot take now), then one commit on the source carries the local outputs, the dead letters
and the acknowledgements. A packet is acknowledged only when every output it produced is
pushed (or dead-lettered). How the source makes that fast (acknowledging by position,
claiming the next batch with the commit) is the source's business. Metrics and logging are
``Hooks`` around the loop; the worker itself logs nothing.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import TransportError
from ..routing import Destination
from ..transport.base import Claim, Commit, Rejected, Source
from .claim_size import ClaimSize
from .deadletter import DeadLetters, Record
from .hooks import Batch, Hooks
from .loghooks import LoggingHooks
from .outbox import MAX_PARKED, Delivery, Outbox
from .outcome import PipelineResult
from .pipeline import Pipeline
from .watchdog import Gate

__all__ = ["MAX_PARKED", "Worker"]

_MEMO_MAX = 4096  # destinations whose locality is remembered
_NOTHING = PipelineResult()


class Worker:
    """Runs the loop on the calling thread until ``stop()``; then ``shutdown()`` drains."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: Source,
        sink_for: Callable[[Destination], Any],
        *,
        block_id: str,
        instance_id: str,
        claim_batch: int = 64,
        max_deliveries: int = 5,
        idle_wait_s: float = 1.0,
        delivery_timeout_s: float = 30.0,
        claim_target_s: float = 0.1,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self.max_deliveries = max_deliveries
        self.idle_wait_s = idle_wait_s
        self.hooks = hooks or LoggingHooks()
        # Deadlines, backoff and delivery timeouts are measured on this clock (a test passes
        # one it moves by hand; it must be the clock the block's batchers use).
        self.clock = clock
        self.records = DeadLetters(block_id, instance_id)
        self.outbox = Outbox(
            sink_for, self.records, self.hooks, delivery_timeout_s=delivery_timeout_s
        )
        self.claim_size = ClaimSize(claim_batch, claim_target_s)
        self.stopping = threading.Event()
        self.gate = Gate()  # around every transport call: a watchdog may take the source over
        self.in_flight = 0
        self._numbers = itertools.count(1)
        self._local: dict[Destination, bool] = {}  # source.is_local, memoized

    @property
    def parked(self) -> int:
        """Outputs waiting for an unreachable endpoint."""
        return self.outbox.parked_outputs

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        """Step until stop() is called."""
        failing = False
        while not self.stopping.is_set():
            try:
                self.step()
            except TransportError as exc:
                failing = True
                self.hooks.source_failed(exc)
                self.stopping.wait(1.0)
                continue
            if failing:
                failing = False
                self.hooks.source_recovered()

    def stop(self) -> None:
        """Stop claiming (the current step finishes). Safe from a signal handler."""
        self.stopping.set()
        self.source.stop_claiming()

    def step(self) -> int:
        """One claim/process/commit cycle; returns the number of packets claimed."""
        self._retry_parked()
        if self.outbox.backpressure:
            self.stopping.wait(self._wait_s())  # a slow endpoint: leave the backlog in Redis
            return 0
        with self.gate:
            claims = self.source.claim(self.claim_size.next, self._wait_s())
        if claims:
            self._run(claims)
        self._tick_if_due()
        return len(claims)

    def _run(self, claims: list[Claim]) -> None:
        batch = Batch(next(self._numbers), tuple(claims))
        self.in_flight = len(claims)
        try:
            self.hooks.claimed(batch)
            fresh, poison = _screen(claims, self.max_deliveries)
            t0 = time.perf_counter()
            result = self.pipeline.process_batch(fresh) if fresh else _NOTHING
            self.claim_size.observe(time.perf_counter() - t0, len(claims))
            self.hooks.processed(batch, result)
            self._commit(
                batch, result, [self.records.poison(c, self.max_deliveries) for c in poison]
            )
        finally:
            self.in_flight = 0

    def _tick_if_due(self) -> None:
        deadline = self.pipeline.next_deadline()
        if deadline is not None and deadline <= self.clock():
            batch = Batch(next(self._numbers))
            result = self.pipeline.tick()
            self.hooks.processed(batch, result)
            self._commit(batch, result, [])

    def _wait_s(self) -> float:
        """How long a claim may block: until the next batch/muxer deadline or parked retry."""
        now = self.clock()
        wait = min(self.idle_wait_s, self.outbox.next_retry_at - now)
        deadline = self.pipeline.next_deadline()
        if deadline is not None:
            wait = min(wait, deadline - now)
        return max(wait, 0.0)

    # -- the commit ------------------------------------------------------------------------
    def _commit(self, batch: Batch, result: PipelineResult, records: list[Record]) -> None:
        """Push remote outputs, then commit local outputs, dead letters and acks at once."""
        with self.gate:
            self._commit_now(batch, result, records)

    def _commit_now(self, batch: Batch, result: PipelineResult, records: list[Record]) -> None:
        t0 = time.perf_counter()
        records += self._failures(batch, result)
        local, remote, pushed = self._route(batch, result)
        held, rejected = self.outbox.send(remote, self.clock()) if remote else ([], [])
        records += rejected
        # Inputs whose outputs wait for an endpoint leave the claim all the same, set aside
        # (acknowledged by name once delivered): the claim can still be acknowledged whole.
        acks = _acks(batch, result, ())
        pushed -= self.outbox.count(remote) if held else 0  # parked: not pushed yet
        done = len(acks) - len(held)

        def settled(refused: Rejected) -> None:
            self.hooks.committed(batch, pushed, done, time.perf_counter() - t0)
            self._dead_lettered(batch, records)
            if refused:
                self._reject(batch, result, refused)

        self._send(Commit(local, acks, [r.data for r in records], settled, held))

    def _failures(self, batch: Batch, result: PipelineResult) -> list[Record]:
        return [
            self.records.failure(f, batch.attempt_of(f.packets[0]) if f.packets else 1)
            for f in result.failures
        ]

    def _route(
        self, batch: Batch, result: PipelineResult
    ) -> tuple[dict[Destination, list[bytes]], list[Delivery], int]:
        """Outputs for the source's server by destination; the rest by input; how many."""
        local: dict[Destination, list[bytes]] = {}
        remote: dict[tuple[bytes, ...], Delivery] = {}
        count = 0
        for out in result.outputs:
            for dest in out.destinations:
                count += 1
                bucket = local.get(dest)
                if bucket is not None:
                    bucket.append(out.payload)
                elif self._is_local(dest):
                    local[dest] = [out.payload]
                else:
                    delivery = remote.get(out.sources)
                    if delivery is None:
                        attempts = batch.attempt_of(out.sources[0]) if out.sources else 1
                        delivery = remote[out.sources] = Delivery(out.sources, attempts=attempts)
                    delivery.pending.setdefault(dest, []).append(out.payload)
        return local, list(remote.values()), count

    def _send(self, commit: Commit) -> None:
        """Commit on the source; park the commit when it cannot be reached (the inputs stay
        claimed, handed back by the lease if this instance dies)."""
        try:
            self.source.commit(commit)
        except TransportError:
            self.outbox.park_commit(commit)
            raise

    def _dead_lettered(self, batch: Batch, records: Sequence[Record]) -> None:
        by_outcome: dict[str, list[Record]] = {}
        for record in records:
            by_outcome.setdefault(record.outcome, []).append(record)
        for outcome, same in by_outcome.items():
            self.hooks.dead_lettered(batch, outcome, len(same), same[0].reason)

    def _reject(self, batch: Batch, result: PipelineResult, refused: Rejected) -> None:
        """Local pushes the server refused, learned once their inputs were acknowledged:
        their records go out in a commit of their own, parked so that it is sent (first,
        and again until it succeeds) before the next claim, and at shutdown."""
        records = []
        for dest, error in refused.items():
            sources = [raw for o in result.outputs if dest in o.destinations for raw in o.sources]
            where = f"{dest.host}:{dest.port}/{dest.db}"
            reason = f"{where} rejected the push to {dest.queue_name!r}: {error}"
            attempts = batch.attempt_of(sources[0]) if sources else 1
            records.append(self.records.undelivered(sources, reason, attempts))

        def settled(refused: Rejected) -> None:
            self._dead_lettered(batch, records)

        self.outbox.park_commit(Commit(records=[r.data for r in records], settled=settled))

    # -- parked work -----------------------------------------------------------------------
    def _retry_parked(self) -> None:
        """Retry commits the source could not take (in order), then finish the parked
        deliveries that are due."""
        with self.gate:
            self._retry_parked_now()

    def _retry_parked_now(self) -> None:
        self.outbox.resend(self.source.commit)
        acks, records = self.outbox.retry(self.clock())
        if not (acks or records):
            return
        batch = Batch(next(self._numbers))

        def settled(refused: Rejected) -> None:
            self.hooks.committed(batch, 0, len(acks), 0.0)
            self._dead_lettered(batch, records)

        self._send(Commit(acks=acks, records=[r.data for r in records], settled=settled))

    # -- shutdown --------------------------------------------------------------------------
    def shutdown(self, timeout_s: float) -> None:
        """Flush time-based batches, hand muxer-held inputs back, retry parked outputs."""
        deadline = time.monotonic() + timeout_s  # a budget of real time, whatever the clock
        self.source.stop_claiming()
        try:
            self._retry_parked()  # what waits goes first, in order
            batch = Batch(next(self._numbers))
            result = self.pipeline.drain()
            self.hooks.processed(batch, result)
            self._commit(batch, result, [])
            handed = self.pipeline.hand_back()
            if handed:
                with self.gate:
                    self.source.release(handed)
            while self.outbox.busy and time.monotonic() < deadline:
                wait = min(self.outbox.next_retry_at - self.clock(), deadline - time.monotonic())
                time.sleep(min(max(wait, 0.0), 0.1))
                self._retry_parked()
        except TransportError as exc:
            # The input Redis is away: what is claimed stays in its processing list (handed
            # back when it answers, or by the lease), so waiting would only hold the exit.
            self.hooks.source_failed(exc, retrying=False)
        if self.outbox.busy:
            self.hooks.unfinished(self.outbox.deliveries)
        self.outbox.close()
        self.hooks.stopped()

    def _is_local(self, dest: Destination) -> bool:
        local = self._local.get(dest)
        if local is None:
            if len(self._local) >= _MEMO_MAX:
                self._local.clear()  # per-request reply lists must not grow it forever
            local = self._local[dest] = self.source.is_local(dest)
        return local


def _acks(batch: Batch, result: PipelineResult, held: Sequence[bytes]) -> list[bytes]:
    """The inputs this commit acknowledges: the claim, in claim order (so that the source
    can acknowledge it whole), less what the muxer buffers or a parked delivery holds, plus
    what the muxer released."""
    raws = [c.raw for c in batch.claims]
    if not (result.waiting_raws or result.released_raws or held):
        return raws
    skip = Counter(result.waiting_raws)
    skip.update(held)
    acks = []
    for raw in (*raws, *result.released_raws):
        if skip[raw] > 0:
            skip[raw] -= 1
        else:
            acks.append(raw)
    return acks


def _screen(claims: list[Claim], max_deliveries: int) -> tuple[list[bytes], list[Claim]]:
    """The packets to process, and those past their delivery limit (dead-lettered)."""
    fresh = [c.raw for c in claims if c.attempt <= max_deliveries]
    if len(fresh) == len(claims):
        return fresh, []
    return fresh, [c for c in claims if c.attempt > max_deliveries]
