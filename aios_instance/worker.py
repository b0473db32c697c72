"""The processing loop: claim → pipeline → push → acknowledge, with nothing lost on the way.

One step claims up to K packets, runs them through the pipeline, and commits: pushes to
remote destinations (one pipelined round trip per endpoint), then one transaction on the
input Redis with the local pushes, the dead letters and the acknowledgements. A packet is
acknowledged only when every output it produced is pushed. Outputs to an unreachable endpoint
are *parked* and retried with backoff while the loop keeps serving other packets; past
``delivery_timeout_s`` they are dead-lettered with the reason. Metrics and logging happen in
``WorkerHooks`` around the loop, not inside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._pipeline import Failure, Pipeline, PipelineResult
from .deadletter import dead_letter_record
from .errors import TransportError
from .routing import Destination
from .transport import Claim, Sink, Source

__all__ = ["Worker", "WorkerHooks"]

log = logging.getLogger(__name__)

MAX_PARKED = 10_000  # outputs held for an unreachable endpoint before claiming pauses
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 5.0


class WorkerHooks:
    """Called around the loop; the default does nothing. Block wires metrics in here."""

    def claimed(self, claims: Sequence[Claim]) -> None:
        """After a claim round trip."""

    def processed(self, result: PipelineResult) -> None:
        """After the pipeline ran a batch (or a tick)."""

    def committed(self, pushed: int, dead: Counter[str], acked: int, seconds: float) -> None:
        """After outputs were pushed and packets acknowledged."""

    def delivery_failed(self, endpoint: str, error: Exception, parked: int) -> None:
        """When an endpoint could not be reached (outputs parked for retry)."""


@dataclass(eq=False)
class _Delivery:
    """The outputs of one input (or muxed group), still to be pushed, and its dead letters."""

    sources: tuple[bytes, ...]
    pending: dict[Destination, list[bytes]] = field(default_factory=dict)
    first_failure: float = 0.0
    last_error: str = ""


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
        hooks: WorkerHooks | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self._sink_for = sink_for
        self.block_id = block_id
        self.instance_id = instance_id
        self.claim_batch = claim_batch
        self.max_deliveries = max_deliveries
        self.idle_wait_s = idle_wait_s
        self.delivery_timeout_s = delivery_timeout_s
        self.hooks = hooks or WorkerHooks()
        self.stopping = threading.Event()
        self._parked: list[_Delivery] = []
        self._retry_at: dict[str, float] = {}  # endpoint key → monotonic time of next try
        self._backoff: dict[str, float] = {}
        self._attempts: dict[bytes, int] = {}
        self._last_errors: dict[Destination, str] = {}
        self.in_flight = 0

    # -- loop ------------------------------------------------------------------------------
    def run(self) -> None:
        """Step until stop() is called."""
        while not self.stopping.is_set():
            try:
                self.step()
            except TransportError as exc:
                log.error("input redis unreachable, retrying: %s", exc)
                self.stopping.wait(1.0)

    def stop(self) -> None:
        """Stop claiming (the current step finishes)."""
        self.stopping.set()

    def step(self) -> int:
        """One claim/process/commit cycle; returns the number of packets claimed."""
        self._retry_parked()
        if sum(len(p) for d in self._parked for p in d.pending.values()) > MAX_PARKED:
            self.stopping.wait(self._wait_s())  # backpressure: an endpoint is down
            return 0
        claims = self.source.claim(self.claim_batch, self._wait_s())
        self.in_flight = len(claims)
        if claims:
            self.hooks.claimed(claims)
            self._handle(claims)
        self._tick_if_due()
        self.in_flight = 0
        return len(claims)

    def _handle(self, claims: list[Claim]) -> None:
        fresh: list[bytes] = []
        poison: list[Claim] = []
        for claim in claims:
            if claim.attempt > self.max_deliveries:
                poison.append(claim)
            else:
                fresh.append(claim.raw)
            if claim.attempt > 1:
                self._attempts[claim.raw] = claim.attempt
        result = self.pipeline.process_batch(fresh) if fresh else PipelineResult()
        self.hooks.processed(result)
        self._commit(result, [c.raw for c in claims], self._poison_records(poison))

    def _tick_if_due(self) -> None:
        deadline = self.pipeline.next_deadline()
        if deadline is not None and deadline <= time.monotonic():
            result = self.pipeline.tick()
            self.hooks.processed(result)
            self._commit(result, [], [])

    def _wait_s(self) -> float:
        """How long a claim may block: until the next batch/muxer deadline or parked retry."""
        wait = self.idle_wait_s
        now = time.monotonic()
        deadline = self.pipeline.next_deadline()
        if deadline is not None:
            wait = min(wait, deadline - now)
        if self._parked and self._retry_at:
            wait = min(wait, min(self._retry_at.values()) - now)
        return max(wait, 0.0)

    # -- commit ----------------------------------------------------------------------------
    def _commit(self, result: PipelineResult, claimed: list[bytes], dead: list[bytes]) -> None:
        t0 = time.perf_counter()
        acks = Counter(claimed)
        acks.subtract(result.waiting_raws)
        acks.update(result.released_raws)
        dead_reasons: Counter[str] = Counter({"max_deliveries": len(dead)} if dead else {})
        for failure in result.failures:
            dead.append(self._record(failure))
            dead_reasons[failure.outcome.value] += 1
        deliveries = _group_outputs(result)
        parked = self._push_remote(deliveries)
        for delivery in parked:
            acks.subtract(delivery.sources)
        local = _merge_local(deliveries, self.source)
        ack_list = [raw for raw in (+acks).elements() if raw]
        self._commit_local(local, ack_list, dead, deliveries, parked)
        pushed = sum(len(o.destinations) for o in result.outputs)
        self.hooks.committed(pushed, dead_reasons, len(ack_list), time.perf_counter() - t0)
        for raw in ack_list:
            self._attempts.pop(raw, None)

    def _commit_local(
        self,
        local: dict[Destination, list[bytes]],
        acks: list[bytes],
        dead: list[bytes],
        deliveries: list[_Delivery],
        parked: list[_Delivery],
    ) -> None:
        try:
            self.source.commit(local, acks, dead)
        except TransportError:
            # Input Redis down: nothing was acknowledged, so every packet stays claimed in
            # Redis and is requeued by the lease protocol if we die; retry the commit later.
            for delivery in deliveries:
                if delivery not in parked:
                    delivery.first_failure = time.monotonic()
                    self._parked.append(delivery)
            self._parked.append(_Delivery(tuple(acks), {}, time.monotonic(), "commit failed"))
            if dead:
                self._parked.append(_DeadOnly(dead))
            raise
        else:
            for delivery in parked:
                _drop_local(delivery, self.source)
                self._parked.append(delivery)

    def _push_remote(self, deliveries: Sequence[_Delivery]) -> list[_Delivery]:
        """Push to non-local endpoints; returns deliveries that still have pushes pending."""
        by_sink: dict[int, tuple[Any, dict[Destination, list[bytes]]]] = {}
        for delivery in deliveries:
            for dest, payloads in delivery.pending.items():
                if not self.source.is_local(dest):
                    sink = self._sink_for(dest)
                    by_sink.setdefault(id(sink), (sink, {}))[1].setdefault(dest, []).extend(
                        payloads
                    )
        failed: set[Destination] = set()
        for sink, batch in by_sink.values():
            if not self._try_push(sink, batch):
                failed.update(batch)
        return [d for d in deliveries if _settle(d, failed, self.source)]

    def _try_push(self, sink: Sink, batch: dict[Destination, list[bytes]]) -> bool:
        key = _endpoint(next(iter(batch)))
        try:
            sink.push(batch)
        except TransportError as exc:
            backoff = min(self._backoff.get(key, _BACKOFF_MIN_S) * 2, _BACKOFF_MAX_S)
            self._backoff[key] = backoff
            self._retry_at[key] = time.monotonic() + backoff
            self.hooks.delivery_failed(key, exc, sum(len(p) for p in batch.values()))
            for dest in batch:
                self._last_errors[dest] = str(exc)
            return False
        self._backoff.pop(key, None)
        self._retry_at.pop(key, None)
        return True

    # -- parked outputs --------------------------------------------------------------------
    def _retry_parked(self) -> None:
        if not self._parked:
            return
        now = time.monotonic()
        if self._retry_at and min(self._retry_at.values()) > now:
            return
        parked, self._parked = self._parked, []
        expired = [d for d in parked if self._timed_out(d, now)]
        retry = [d for d in parked if d not in expired]
        dead_only = [d for d in retry if isinstance(d, _DeadOnly)]
        retry = [d for d in retry if not isinstance(d, _DeadOnly)]
        still = self._push_remote(retry)
        done = [d for d in retry if d not in still]
        acks = [raw for d in done + expired for raw in d.sources if raw]
        dead = [rec for d in dead_only for rec in d.records] + [self._expired(d) for d in expired]
        local = _merge_local(done, self.source)
        try:
            self._commit_local(local, acks, dead, [], still)
        except TransportError:
            self._parked = parked
            raise

    def _timed_out(self, delivery: _Delivery, now: float) -> bool:
        remote = any(not self.source.is_local(d) for d in delivery.pending)
        return remote and now - delivery.first_failure > self.delivery_timeout_s

    def _expired(self, delivery: _Delivery) -> bytes:
        where = ", ".join(sorted({_endpoint(d) for d in delivery.pending}))
        errors = "; ".join(sorted({self._last_errors.get(d, "") for d in delivery.pending}))
        reason = f"outputs undeliverable to {where} for {self.delivery_timeout_s:g}s: {errors}"
        log.error("dead-lettering %d packets: %s", len(delivery.sources), reason)
        return dead_letter_record(
            outcome="delivery_error", stage="push", reason=reason, packets=delivery.sources,
            block_id=self.block_id, instance_id=self.instance_id,
        )  # fmt: skip

    # -- shutdown --------------------------------------------------------------------------
    def shutdown(self, timeout_s: float) -> None:
        """Flush time-based batches, hand muxer-held inputs back, retry parked outputs."""
        deadline = time.monotonic() + timeout_s
        try:
            result = self.pipeline.drain()
            self.hooks.processed(result)
            self._commit(result, [], [])
            handed = self.pipeline.hand_back()
            if handed:
                self.source.release(handed)
            while self._parked and time.monotonic() < deadline:
                self._retry_parked()
                if self._parked:
                    time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
        except TransportError as exc:
            log.error("could not finish claimed packets at shutdown: %s", exc)
        if self._parked:
            log.warning("%d deliveries unfinished at shutdown; their inputs are requeued",
                        len(self._parked))  # fmt: skip

    # -- records ---------------------------------------------------------------------------
    def _record(self, failure: Failure) -> bytes:
        first = failure.packets[0] if failure.packets else b""
        return dead_letter_record(
            outcome=failure.outcome.value, stage=failure.stage, reason=failure.reason,
            packets=failure.packets, block_id=self.block_id, instance_id=self.instance_id,
            session_id=failure.session_id, seq_no=failure.seq_no,
            traceback=failure.traceback, attempts=self._attempts.get(first, 1),
        )  # fmt: skip

    def _poison_records(self, poison: Iterable[Claim]) -> list[bytes]:
        records = []
        for claim in poison:
            reason = (
                f"delivered {claim.attempt} times without completing "
                f"(max_deliveries={self.max_deliveries})"
            )
            log.error("dead-lettering a packet: %s", reason)
            records.append(
                dead_letter_record(
                    outcome="max_deliveries", stage="claim", reason=reason, packets=[claim.raw],
                    block_id=self.block_id, instance_id=self.instance_id, attempts=claim.attempt,
                )  # fmt: skip
            )
        return records

    @property
    def parked(self) -> int:
        """Outputs waiting for an unreachable endpoint."""
        return sum(len(p) for d in self._parked for p in d.pending.values())


class _DeadOnly(_Delivery):
    """Dead letters whose commit failed, kept for the next try."""

    def __init__(self, records: list[bytes]) -> None:
        super().__init__((), {}, time.monotonic(), "commit failed")
        self.records = records


def _group_outputs(result: PipelineResult) -> list[_Delivery]:
    """One delivery per input (or muxed group): its outputs by destination."""
    by_sources: dict[tuple[bytes, ...], _Delivery] = {}
    for out in result.outputs:
        delivery = by_sources.get(out.sources)
        if delivery is None:
            delivery = by_sources[out.sources] = _Delivery(out.sources)
        for dest in out.destinations:
            delivery.pending.setdefault(dest, []).append(out.payload)
    return list(by_sources.values())


def _settle(delivery: _Delivery, failed: set[Destination], source: Source) -> bool:
    """Drop pushed remote destinations; True when some remote push is still pending."""
    for dest in list(delivery.pending):
        if not source.is_local(dest) and dest not in failed:
            del delivery.pending[dest]
    pending = any(not source.is_local(d) for d in delivery.pending)
    if pending and not delivery.first_failure:
        delivery.first_failure = time.monotonic()
    return pending


def _merge_local(deliveries: Iterable[_Delivery], source: Source) -> dict[Destination, list[bytes]]:
    local: dict[Destination, list[bytes]] = {}
    for delivery in deliveries:
        for dest, payloads in delivery.pending.items():
            if source.is_local(dest):
                local.setdefault(dest, []).extend(payloads)
    return local


def _drop_local(delivery: _Delivery, source: Source) -> None:
    for dest in [d for d in delivery.pending if source.is_local(d)]:
        del delivery.pending[dest]


def _endpoint(dest: Destination) -> str:
    return dest.host if dest.kind == "grpc" else f"{dest.host}:{dest.port}/{dest.db}"
