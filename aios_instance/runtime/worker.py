"""The processing loop: claim → pipeline → push → acknowledge, with nothing lost on the way.

One step claims up to K packets, runs them through the pipeline, and commits: pushes to
remote destinations (one pipelined round trip per endpoint), then one transaction on the
input Redis with the local pushes, the dead letters and the acknowledgements. A packet is
acknowledged only when every output it produced is pushed (or dead-lettered).

Outputs to an unreachable endpoint are *parked*: their inputs stay claimed, the endpoint is
retried with exponential backoff (new outputs for it are parked without a try while it backs
off) and the loop keeps serving other packets; past ``delivery_timeout_s`` they are
dead-lettered with the reason. A push the server *rejects* (``WRONGTYPE``: the list name is
another kind of key) cannot succeed on retry and is dead-lettered at once. When the input
Redis itself is down, the whole commit is parked and retried. Metrics and logging happen in
``WorkerHooks`` around the loop, not inside it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .. import keys
from ..errors import AckPendingError, PacketDecodeError, TransportError
from ..packet import decode_packet
from ..routing import Destination
from ..transport.base import Claim, Sent, Sink, Source
from .deadletter import dead_letter_record
from .pipeline import Failure, Pipeline, PipelineResult

__all__ = ["MAX_PARKED", "Worker", "WorkerHooks"]

log = logging.getLogger(__name__)

MAX_PARKED = 10_000  # outputs held for unreachable endpoints before claiming pauses
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 5.0
_FIRST_CLAIM = 8  # packets in the first claim, before the block's speed is known
_MEMO_MAX = 4096  # destinations whose locality is remembered


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
    """Inputs to acknowledge once their outputs still ``pending`` are pushed.

    One per input (or muxed group) while remote pushes are outstanding; a whole commit when
    the input Redis could not be reached (then every pending destination is local).
    ``dead`` are records committed with the acknowledgement; ``origins`` names the inputs
    behind each local destination (to dead-letter them if the server rejects the push).
    """

    sources: tuple[bytes, ...]
    pending: dict[Destination, list[bytes]] = field(default_factory=dict)
    dead: list[bytes] = field(default_factory=list)
    origins: dict[Destination, list[bytes]] = field(default_factory=dict)
    first_failure: float = 0.0


class _InFlight(NamedTuple):
    """A commit sent ahead and not yet finished, with what to account for once it is."""

    sent: Sent
    result: PipelineResult | None  # the batch it commits (None: a claim only)
    pushed: int
    acked: int
    t0: float


@dataclass
class _Endpoint:
    """Backoff state of an endpoint whose last push failed."""

    backoff_s: float = _BACKOFF_MIN_S
    retry_at: float = 0.0
    error: str = ""


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
        self._parked_outputs = 0
        self._next_retry = math.inf  # monotonic time the parked deliveries need attention
        self._down: dict[str, _Endpoint] = {}
        self._attempts: dict[bytes, int] = {}
        self._local: dict[Destination, bool] = {}  # source.is_local, memoized
        # Claims adapt to how long the block takes per packet, so that a claim holds about
        # claim_target_s of work: fast blocks get full batches, a slow one does not sit on
        # packets another instance could serve, and a drain stays short. The first claim is
        # small, until the block's speed is known.
        self.claim_target_s = claim_target_s
        self._claim_size = min(claim_batch, _FIRST_CLAIM)
        self._next: list[Claim] = []  # claimed with the last commit, not yet processed
        self._sent: _InFlight | None = None  # the commit in flight
        self._unknown_outcome = False  # a commit failed with no reply: hand everything back
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
        if self._unknown_outcome:
            self._hand_back_all()
        self._retry_parked()
        if self._parked_outputs > MAX_PARKED:
            self.stopping.wait(self._wait_s())  # backpressure: an endpoint is down
            return 0
        claims = self._take_next()
        if not claims:
            try:
                claims = self.source.claim(self._claim_size, self._wait_s())
            except TransportError:
                # The claim may have moved packets whose reply never came: hand back.
                self._unknown_outcome = True
                raise
        self.in_flight = len(claims)
        try:
            if claims:
                if (
                    self._sent is None
                    and len(claims) >= self._claim_size  # a short claim: the input is dry
                    and _first_deliveries(claims)
                    and self._may_claim_ahead()
                ):
                    # Start the pipeline: the next batch is claimed while this one runs.
                    self._send_ahead({}, None, ())
                self.hooks.claimed(claims)
                self._handle(claims)
            self._tick_if_due()
        finally:
            self.in_flight = 0
        return len(claims)

    # -- the pipelined hot path ------------------------------------------------------------
    # While batch k runs, the commit of batch k-1 (with the claim of batch k+1) is on its way
    # to Redis: its round trip overlaps the processing instead of following it. At most one
    # commit is in flight; it is finished (its reply read) before anything else touches the
    # processing list.

    def _take_next(self) -> list[Claim]:
        claims, self._next = self._next, []
        if not claims and self._sent is not None:
            self._finish_sent()
            claims, self._next = self._next, []
        return claims

    def _send_ahead(
        self,
        pushes: dict[Destination, list[bytes]],
        result: PipelineResult | None,
        claims: Sequence[Claim],
    ) -> None:
        raws = [claim.raw for claim in claims]
        try:
            sent = self.source.send_commit_and_claim(pushes, raws, self._claim_size)
        except TransportError:
            # Whatever is held (this batch, the one claimed ahead) may be stranded in the
            # processing list: hand everything back once Redis answers.
            self._next = []
            self._unknown_outcome = True
            raise
        pushed = sum(len(p) for p in pushes.values())
        self._sent = _InFlight(sent, result, pushed, len(claims), time.perf_counter())

    def _finish_sent(self) -> None:
        """Read the reply of the commit in flight: account for it, keep its claim."""
        in_flight, self._sent = self._sent, None
        if in_flight is None:
            return
        sent, result, pushed, acked, t0 = in_flight
        try:
            rejected, claims = self.source.finish(sent)
        except AckPendingError as exc:  # it all took effect but the acknowledgement
            rejected, claims = exc.rejected, list(exc.claims)
            self._park_ack(exc.raws)
        except TransportError:
            # The commit and the claim may or may not have happened: nothing held in memory
            # can be trusted. Everything claimed goes back to the input (served again).
            self._next = []
            self._unknown_outcome = True
            raise
        self._next = [*self._next, *claims]  # at shutdown a batch may still be in hand
        if rejected and result is not None:
            self._dead_letter_rejected(rejected, _origins(result, rejected))
        if acked:
            self.hooks.committed(pushed, Counter(), acked, time.perf_counter() - t0)

    def _park_ack(self, raws: tuple[bytes, ...]) -> None:
        """A commit took effect but not its acknowledgement: retry only that (by name)."""
        self._parked.append(_Delivery(raws, first_failure=time.monotonic()))
        self._refresh()

    def _hand_back_all(self) -> None:
        count = self.source.requeue_own()  # TransportError while Redis is still away
        self._unknown_outcome = False
        log.warning("handed %d claimed packets back after a commit with no reply", count)

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
        t0 = time.perf_counter()
        result = self.pipeline.process_batch(fresh) if fresh else PipelineResult()
        self._adapt_claim_size(time.perf_counter() - t0, len(claims))
        self.hooks.processed(result)
        if not poison and self._commit_fast(result, claims):
            return
        self._commit(result, [c.raw for c in claims], self._poison_records(poison))

    def _commit_fast(self, result: PipelineResult, claims: Sequence[Claim]) -> bool:
        """The common case in one loop: first deliveries whose outputs all go to the input
        Redis, nothing failed, buffered or released. The commit acknowledges the whole claim
        without naming its packets. False (nothing done) when the general path is needed."""
        if result.failures or result.waiting_raws or result.released_raws:
            return False
        if not _first_deliveries(claims):
            return False  # redeliveries carry an attempt count to clear: the general path
        pushes = self._local_pushes(result)
        if pushes is None:
            return False
        self._finish_sent()  # the previous commit, and with it the claim of the next batch
        oldest = not self._parked and self.pipeline.muxer is None  # nothing older is held
        if oldest and self._may_claim_ahead():
            self._send_ahead(pushes, result, claims)
            return True
        if not oldest and self._next:
            return False  # neither the oldest nor the latest claim: name each packet
        t0 = time.perf_counter()
        raws = [claim.raw for claim in claims]
        try:
            if oldest:
                rejected = self.source.commit(pushes, (), (), oldest=raws)
            else:
                rejected = self.source.commit(pushes, (), (), latest=raws)
        except AckPendingError as exc:  # pushed; only the acknowledgement is still due
            rejected = exc.rejected
            self._park_ack(exc.raws)
        except TransportError:
            # Retried by the general path, which names each packet (LREM): safe to repeat.
            self._parked.append(_Delivery(tuple(raws), pushes, first_failure=time.monotonic()))
            self._refresh()
            raise
        if rejected:
            self._dead_letter_rejected(rejected, _origins(result, rejected))
        pushed = sum(len(p) for p in pushes.values())
        self.hooks.committed(pushed, Counter(), len(claims), time.perf_counter() - t0)
        return True

    def _local_pushes(self, result: PipelineResult) -> dict[Destination, list[bytes]] | None:
        """Outputs by destination, or None when one goes anywhere but the input Redis."""
        pushes: dict[Destination, list[bytes]] = {}
        is_local = self._is_local
        for out in result.outputs:
            for dest in out.destinations:
                bucket = pushes.get(dest)
                if bucket is None:
                    if not is_local(dest):
                        return None
                    bucket = pushes[dest] = []
                bucket.append(out.payload)
        return pushes

    def _may_claim_ahead(self) -> bool:
        """Whether the next claim can ride with this commit (not when stopping, nor when
        parked work, a muxer or a batch deadline must be seen to before new packets)."""
        return (
            not self.stopping.is_set()
            and not self._parked
            and self.pipeline.muxer is None
            and self.pipeline.next_deadline() is None
        )

    def _adapt_claim_size(self, seconds: float, count: int) -> None:
        """Size the next claim so that it holds about ``claim_target_s`` of work."""
        if count < self._claim_size:
            return  # a short claim (the input ran dry) says little about speed
        per_packet_s = seconds / count
        if per_packet_s * self.claim_batch <= self.claim_target_s:
            self._claim_size = self.claim_batch
        else:
            fits = int(self.claim_target_s / per_packet_s)
            self._claim_size = max(1, min(self.claim_batch, fits))

    def _is_local(self, dest: Destination) -> bool:
        local = self._local.get(dest)
        if local is None:
            if len(self._local) >= _MEMO_MAX:
                self._local.clear()  # per-request reply lists must not grow it forever
            local = self._local[dest] = self.source.is_local(dest)
        return local

    def _tick_if_due(self) -> None:
        deadline = self.pipeline.next_deadline()
        if deadline is not None and deadline <= time.monotonic():
            result = self.pipeline.tick()
            self.hooks.processed(result)
            self._commit(result, [], [])

    def _wait_s(self) -> float:
        """How long a claim may block: until the next batch/muxer deadline or parked retry."""
        now = time.monotonic()
        wait = min(self.idle_wait_s, self._next_retry - now)
        deadline = self.pipeline.next_deadline()
        if deadline is not None:
            wait = min(wait, deadline - now)
        return max(wait, 0.0)

    # -- commit ----------------------------------------------------------------------------
    def _commit(self, result: PipelineResult, claimed: list[bytes], dead: list[bytes]) -> None:
        self._finish_sent()  # the general path names packets: nothing may be in flight
        t0 = time.perf_counter()
        acks = Counter(claimed)
        acks.subtract(result.waiting_raws)
        acks.update(result.released_raws)
        reasons: Counter[str] = Counter({"max_deliveries": len(dead)} if dead else {})
        for failure in result.failures:
            dead.append(self._record(failure))
            reasons[failure.outcome.value] += 1
        deliveries = _group_outputs(result)
        self._push_remote(deliveries, time.monotonic())
        parked = [d for d in deliveries if self._remote_pending(d)]
        for delivery in parked:
            acks.subtract(delivery.sources)
        batch = self._merge(deliveries, parked)
        batch.sources = tuple(raw for raw in (+acks).elements() if raw)
        batch.dead[:0] = dead
        rejected = sum(len(d.dead) for d in deliveries)
        if rejected:
            log.error("dead-lettered %d jobs whose push was rejected (see %s)", rejected,
                      keys.dead_letters(self.block_id))  # fmt: skip
        reasons["delivery_error"] += rejected
        self._parked.extend(parked)
        try:
            self._send(batch)
        finally:
            self._refresh()
        seconds = time.perf_counter() - t0
        pushed = sum(len(o.destinations) for o in result.outputs)
        self.hooks.committed(pushed, +reasons, len(batch.sources), seconds)

    def _merge(self, deliveries: Sequence[_Delivery], parked: Sequence[_Delivery]) -> _Delivery:
        """One commit: every local push of ``deliveries``, the sources and dead letters of
        those not ``parked`` (a parked delivery's local outputs go now; it keeps the rest)."""
        batch = _Delivery(())
        held = {id(d) for d in parked}
        sources: list[bytes] = []
        for delivery in deliveries:
            for dest in [d for d in delivery.pending if self._is_local(d)]:
                batch.pending.setdefault(dest, []).extend(delivery.pending.pop(dest))
                origins = delivery.origins.get(dest, delivery.sources)
                batch.origins.setdefault(dest, []).extend(origins)
            if id(delivery) not in held:
                sources.extend(delivery.sources)
                batch.dead.extend(delivery.dead)
        batch.sources = tuple(sources)
        return batch

    def _send(self, batch: _Delivery) -> None:
        """Commit on the input Redis; park the whole batch when it cannot be reached."""
        try:
            rejected = self.source.commit(batch.pending, batch.sources, batch.dead)
        except TransportError:
            # Nothing was acknowledged: the packets stay claimed in Redis (requeued by the
            # lease protocol if we die); the commit is retried at the next step.
            batch.first_failure = batch.first_failure or time.monotonic()
            self._parked.append(batch)
            raise
        for raw in batch.sources:
            self._attempts.pop(raw, None)
        if rejected:
            self._dead_letter_rejected(rejected, batch.origins)

    def _dead_letter_rejected(
        self, rejected: Mapping[Destination, str], origins: Mapping[Destination, list[bytes]]
    ) -> None:
        """Local pushes the server refused (their inputs are already acknowledged)."""
        records = [
            self._rejected(origins.get(dest, []), dest, err) for dest, err in rejected.items()
        ]
        log.error("dead-lettered %d jobs whose push was rejected (see %s)", len(records),
                  keys.dead_letters(self.block_id))  # fmt: skip
        try:
            self.source.commit({}, (), records)
        except TransportError as exc:
            # Parked and retried with the next step; the batch at hand goes on being served.
            log.warning("could not write dead letters, will retry: %s", exc)
            self._parked.append(_Delivery((), dead=records, first_failure=time.monotonic()))
            self._refresh()
            return
        self.hooks.committed(0, Counter(delivery_error=len(records)), 0, 0.0)

    def _push_remote(self, deliveries: Sequence[_Delivery], now: float) -> None:
        """Push pending remote outputs, one round trip per sink; endpoints that are backing
        off are not tried. Pushed destinations leave ``pending``; rejected ones become dead
        letters of their delivery."""
        batches: dict[int, tuple[Any, dict[Destination, list[bytes]]]] = {}
        unusable: dict[Destination, str] = {}
        for delivery in deliveries:
            for dest, payloads in delivery.pending.items():
                if self._is_local(dest):
                    continue
                down = self._down.get(_endpoint(dest))
                if down is not None and down.retry_at > now:
                    continue
                try:
                    sink = self._sink_for(dest)
                except Exception as exc:  # an address no client accepts: retrying can't help
                    unusable[dest] = f"no connection possible: {exc}"
                    continue
                batches.setdefault(id(sink), (sink, {}))[1].setdefault(dest, []).extend(payloads)
        pushed: set[Destination] = set(unusable)
        rejected: dict[Destination, str] = dict(unusable)
        for sink, batch in batches.values():
            outcome = self._try_push(sink, batch)
            if outcome is not None:
                pushed.update(batch)
                rejected.update(outcome)
        for delivery in deliveries:
            self._settle(delivery, pushed, rejected, now)

    def _try_push(
        self, sink: Sink, batch: dict[Destination, list[bytes]]
    ) -> Mapping[Destination, str] | None:
        """Push one sink's batch: the rejected destinations, or None when unreachable."""
        key = _endpoint(next(iter(batch)))
        try:
            rejected = sink.push(batch)
        except TransportError as exc:
            if key not in self._down:
                log.warning("endpoint %s unreachable, parking its outputs: %s", key, exc)
            down = self._down.setdefault(key, _Endpoint(backoff_s=_BACKOFF_MIN_S / 2))
            down.backoff_s = min(down.backoff_s * 2, _BACKOFF_MAX_S)
            down.retry_at = time.monotonic() + down.backoff_s
            down.error = str(exc)
            self.hooks.delivery_failed(key, exc, sum(len(p) for p in batch.values()))
            return None
        if self._down.pop(key, None) is not None:
            log.warning("endpoint %s reachable again", key)
        return rejected

    def _settle(
        self,
        delivery: _Delivery,
        pushed: set[Destination],
        rejected: Mapping[Destination, str],
        now: float,
    ) -> None:
        for dest in [d for d in delivery.pending if d in pushed]:
            del delivery.pending[dest]
            if dest in rejected:
                delivery.dead.append(self._rejected(delivery.sources, dest, rejected[dest]))
        if not delivery.first_failure and self._remote_pending(delivery):
            delivery.first_failure = now

    def _remote_pending(self, delivery: _Delivery) -> bool:
        return any(not self._is_local(d) for d in delivery.pending)

    # -- parked outputs --------------------------------------------------------------------
    def _retry_parked(self) -> None:
        now = time.monotonic()
        if not self._parked or self._next_retry > now:
            return
        self._finish_sent()
        parked, self._parked = self._parked, []
        records_before = sum(len(d.dead) for d in parked)
        for delivery in [d for d in parked if self._expires_at(d) <= now]:
            delivery.dead.append(self._expired(delivery))
            delivery.pending.clear()
        self._push_remote(parked, now)
        new_records = sum(len(d.dead) for d in parked) - records_before
        still = [d for d in parked if self._remote_pending(d)]
        batch = self._merge(parked, still)
        self._parked = still
        try:
            self._send(batch)
        finally:
            self._refresh()
        if new_records:
            log.error("dead-lettered %d jobs whose outputs could not be delivered (see %s)",
                      new_records, keys.dead_letters(self.block_id))  # fmt: skip
        if batch.sources or new_records:
            reasons: Counter[str] = Counter(delivery_error=new_records)
            self.hooks.committed(0, +reasons, len(batch.sources), 0.0)

    def _expires_at(self, delivery: _Delivery) -> float:
        if not self._remote_pending(delivery):
            return math.inf  # a commit waiting for the input Redis never expires
        return delivery.first_failure + self.delivery_timeout_s

    def _refresh(self) -> None:
        """Recount parked outputs and when the next retry or expiry is due."""
        due, count = math.inf, 0
        for delivery in self._parked:
            count += sum(len(p) for p in delivery.pending.values())
            if not self._remote_pending(delivery):
                due = 0.0  # a parked commit: retry at once (the next claim fails fast)
                continue
            due = min(due, self._expires_at(delivery))
            for dest in delivery.pending:
                down = self._down.get(_endpoint(dest))
                due = min(due, down.retry_at if down is not None else 0.0)
        self._next_retry, self._parked_outputs = due, count

    def _expired(self, delivery: _Delivery) -> bytes:
        where = sorted({_endpoint(d) for d in delivery.pending if not self._is_local(d)})
        errors = sorted({self._down[e].error for e in where if e in self._down})
        reason = (
            f"outputs undeliverable to {', '.join(where)} for "
            f"{self.delivery_timeout_s:g}s: {'; '.join(errors)}"
        )
        log.debug("dead-lettering %d packets: %s", len(delivery.sources), reason)
        return self._delivery_record(delivery.sources, reason)

    def _rejected(self, sources: Sequence[bytes], dest: Destination, error: str) -> bytes:
        reason = f"{_endpoint(dest)} rejected the push to {dest.queue_name!r}: {error}"
        log.debug("dead-lettering %d packets: %s", len(sources), reason)
        return self._delivery_record(sources, reason)

    def _delivery_record(self, sources: Sequence[bytes], reason: str) -> bytes:
        first = sources[0] if sources else b""
        session_id, seq_no = _job_of(first)
        return dead_letter_record(
            outcome="delivery_error", stage="push", reason=reason, packets=sources,
            block_id=self.block_id, instance_id=self.instance_id, session_id=session_id,
            seq_no=seq_no, attempts=self._attempts.get(first, 1),
        )  # fmt: skip

    # -- shutdown --------------------------------------------------------------------------
    def abandon(self) -> None:
        """After a crash: read the commit in flight and hand back the batch claimed ahead
        (it never reached the block, so it is not counted as a delivery). Best effort."""
        try:
            self._finish_sent()
            if self._next:
                self.source.release([claim.raw for claim in self._next])
            self._next = []
        except TransportError as exc:
            log.warning("could not hand back the batch claimed ahead: %s", exc)

    def shutdown(self, timeout_s: float) -> None:
        """Flush time-based batches, hand muxer-held inputs back, retry parked outputs."""
        deadline = time.monotonic() + timeout_s
        try:
            self._finish_sent()
            if self._next:  # claimed with the last commit while stop() came in
                self.source.release([claim.raw for claim in self._next])
                self._next = []
            result = self.pipeline.drain()
            self.hooks.processed(result)
            self._commit(result, [], [])
            handed = self.pipeline.hand_back()
            if handed:
                self.source.release(handed)
            while self._parked and time.monotonic() < deadline:
                self._retry_parked()
                if self._parked:
                    wait = min(self._next_retry, deadline) - time.monotonic()
                    time.sleep(min(max(wait, 0.0), 0.1))
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
            session_id, seq_no = _job_of(claim.raw)
            record = dead_letter_record(
                outcome="max_deliveries", stage="claim", reason=reason, packets=[claim.raw],
                block_id=self.block_id, instance_id=self.instance_id, session_id=session_id,
                seq_no=seq_no, attempts=claim.attempt,
            )  # fmt: skip
            records.append(record)
        return records

    @property
    def parked(self) -> int:
        """Outputs waiting for an unreachable endpoint (or for the input Redis)."""
        return self._parked_outputs


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


def _first_deliveries(claims: Sequence[Claim]) -> bool:
    """Whether no claim is a redelivery (none may be claimed ahead beside one: if it is a
    poison packet, only its own count may grow when it crashes the process)."""
    return all(claim.attempt == 1 for claim in claims)


def _origins(
    result: PipelineResult, dests: Iterable[Destination]
) -> dict[Destination, list[bytes]]:
    """The inputs behind each of ``dests`` (for the dead-letter records of a rejected push)."""
    wanted = set(dests)
    origins: dict[Destination, list[bytes]] = {}
    for out in result.outputs:
        for dest in wanted.intersection(out.destinations):
            origins.setdefault(dest, []).extend(out.sources)
    return origins


def _job_of(raw: bytes) -> tuple[str, int]:
    """(session_id, seq_no) of a packet, for a dead-letter record (blank if undecodable)."""
    try:
        packet = decode_packet(raw)
    except PacketDecodeError:
        return "", 0
    return packet.session_id, packet.seq_no


def _endpoint(dest: Destination) -> str:
    return dest.host if dest.kind == "grpc" else f"{dest.host}:{dest.port}/{dest.db}"
