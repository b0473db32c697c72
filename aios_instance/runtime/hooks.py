"""Cross-cutting behaviour as hooks around the worker loop: the loop reports events, each
naming the batch it is about; metrics (here) and logging (``loghooks``) are implementations,
and ``Hooks.combine`` runs several.

A batch's events come in order (claimed → processed → committed), but the batches overlap:
the Redis source commits batch k while batch k+1 is processed, so ``committed`` for k may
arrive after ``processed`` for k+1. An implementation that needs to carry something from one
event of a batch to another keys it by ``batch.number``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..transport.base import Claim
from .instruments import RuntimeMetrics
from .outcome import PipelineResult

__all__ = ["Batch", "Hooks", "MetricsHooks"]

_MAX_OPEN_BATCHES = 64  # batches processed and not committed, remembered by MetricsHooks


@dataclass(frozen=True, slots=True)
class Batch:
    """One claim on its way round the loop (``claims`` empty: a tick or the drain at
    shutdown, work the loop does without claiming)."""

    number: int
    claims: tuple[Claim, ...] = ()
    redeliveries: int = field(init=False, default=0)  # claims delivered before

    def __post_init__(self) -> None:
        redelivered = sum(1 for c in self.claims if c.attempt > 1)
        object.__setattr__(self, "redeliveries", redelivered)

    def attempt_of(self, raw: bytes) -> int:
        """How many times ``raw`` (a packet of this batch) was delivered, this time included."""
        if self.redeliveries:
            for claim in self.claims:
                if claim.raw == raw:
                    return claim.attempt
        return 1


class Hooks:
    """Called around the loop; every method does nothing by default."""

    def claimed(self, batch: Batch) -> None:
        """After a claim, before the pipeline runs."""

    def processed(self, batch: Batch, result: PipelineResult) -> None:
        """After the pipeline ran the batch."""

    def committed(self, batch: Batch, pushed: int, acked: int, seconds: float) -> None:
        """Once the batch's commit took effect: ``pushed`` outputs, ``acked`` inputs,
        ``seconds`` from the start of the commit until it was confirmed."""

    def dead_lettered(self, batch: Batch, reason: str, count: int, detail: str) -> None:
        """Once ``count`` dead-letter records for ``reason`` were written (``detail``: the
        first record's reason, for a log line)."""

    def delivery_failed(self, endpoint: str, error: Exception, parked: int) -> None:
        """When an endpoint could not be reached (its ``parked`` outputs wait for a retry)."""

    def delivery_recovered(self, endpoint: str) -> None:
        """When an endpoint that failed took a push again."""

    def source_failed(self, error: Exception, *, retrying: bool = True) -> None:
        """When the source (the input Redis) could not be reached: the loop retries, or
        (``retrying`` False) a shutdown leaves what it holds to the lease."""

    def source_recovered(self) -> None:
        """When the source answered again after ``source_failed``."""

    def unfinished(self, deliveries: int) -> None:
        """At shutdown: deliveries still parked (their inputs go back to the input)."""

    def stopped(self) -> None:
        """The loop has finished its shutdown."""

    @staticmethod
    def combine(*hooks: Hooks) -> Hooks:
        """One Hooks that calls each of ``hooks`` in order."""
        if not hooks:
            return Hooks()
        return hooks[0] if len(hooks) == 1 else _Combined(hooks)


class _Combined(Hooks):
    def __init__(self, hooks: Iterable[Hooks]) -> None:
        self.hooks = tuple(hooks)

    def claimed(self, batch: Batch) -> None:
        for h in self.hooks:
            h.claimed(batch)

    def processed(self, batch: Batch, result: PipelineResult) -> None:
        for h in self.hooks:
            h.processed(batch, result)

    def committed(self, batch: Batch, pushed: int, acked: int, seconds: float) -> None:
        for h in self.hooks:
            h.committed(batch, pushed, acked, seconds)

    def dead_lettered(self, batch: Batch, reason: str, count: int, detail: str) -> None:
        for h in self.hooks:
            h.dead_lettered(batch, reason, count, detail)

    def delivery_failed(self, endpoint: str, error: Exception, parked: int) -> None:
        for h in self.hooks:
            h.delivery_failed(endpoint, error, parked)

    def delivery_recovered(self, endpoint: str) -> None:
        for h in self.hooks:
            h.delivery_recovered(endpoint)

    def source_failed(self, error: Exception, *, retrying: bool = True) -> None:
        for h in self.hooks:
            h.source_failed(error, retrying=retrying)

    def source_recovered(self) -> None:
        for h in self.hooks:
            h.source_recovered()

    def unfinished(self, deliveries: int) -> None:
        for h in self.hooks:
            h.unfinished(deliveries)

    def stopped(self) -> None:
        for h in self.hooks:
            h.stopped()


class MetricsHooks(Hooks):
    """Feeds RuntimeMetrics: one sample per batch, never per packet."""

    def __init__(self, metrics: RuntimeMetrics) -> None:
        self.metrics = metrics
        self._newest_ts: dict[int, float] = {}  # batch number → its newest output's ts

    def claimed(self, batch: Batch) -> None:
        """Count packets in, redeliveries and the batch size."""
        m, claims = self.metrics, batch.claims
        m.packets_in(len(claims))
        m.observe_batch_size(len(claims))
        if batch.redeliveries:
            m.redeliveries(batch.redeliveries)

    def processed(self, batch: Batch, result: PipelineResult) -> None:
        """Count outcomes and observe the batch's phase durations."""
        m = self.metrics
        for phase, seconds in result.phase_s.items():
            m.observe_phase(phase, seconds)
        if result.held:
            m.held(result.held)
        for failure in result.failures:
            m.packets_failed(failure.outcome.value)
            if failure.outcome.value == "expired":
                m.muxer_expired(1)
        # End-to-end latency: one sample per batch (its newest packet), enough for p50/p99
        # without a histogram observation per packet; measured when *this* batch commits.
        if result.outputs and result.outputs[-1].ts > 0:
            if len(self._newest_ts) >= _MAX_OPEN_BATCHES:
                self._newest_ts.clear()  # batches whose commit failed and were handed back
            self._newest_ts[batch.number] = result.outputs[-1].ts

    def committed(self, batch: Batch, pushed: int, acked: int, seconds: float) -> None:
        """Count pushed outputs; observe the push phase and the batch's latency."""
        ts = self._newest_ts.pop(batch.number, 0.0)
        if not pushed:
            return
        m = self.metrics
        m.observe_phase("push", seconds)
        m.packets_out(pushed)
        if ts:
            m.observe_end_to_end(max(time.time() - ts, 0.0))

    def dead_lettered(self, batch: Batch, reason: str, count: int, detail: str) -> None:
        self.metrics.dead_lettered(reason, count)

    def delivery_failed(self, endpoint: str, error: Exception, parked: int) -> None:
        """Count outputs that could not be delivered on this try."""
        self.metrics.packets_failed("delivery_error", parked)
