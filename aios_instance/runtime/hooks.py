"""Metrics as hooks around the worker loop: the loop reports events, this turns them into
Prometheus samples, batched per claim so the per-packet cost stays near zero."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from ..transport.base import Claim
from .instruments import RuntimeMetrics
from .pipeline import PipelineResult
from .worker import WorkerHooks

__all__ = ["MetricsHooks"]


class MetricsHooks(WorkerHooks):
    """Feeds RuntimeMetrics from the worker's events."""

    def __init__(self, metrics: RuntimeMetrics) -> None:
        self.metrics = metrics
        self._last_ts: list[float] = []

    def claimed(self, claims: Sequence[Claim]) -> None:
        """Count packets in, redeliveries and the batch size."""
        m = self.metrics
        m.packets_in(len(claims))
        m.observe_batch_size(len(claims))
        redelivered = sum(1 for c in claims if c.attempt > 1)
        if redelivered:
            m.redeliveries(redelivered)

    def processed(self, result: PipelineResult) -> None:
        """Count outcomes and observe per-batch phase durations."""
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
        # without a histogram observation per packet.
        self._last_ts = [o.ts for o in result.outputs[-1:] if o.ts > 0]

    def committed(self, pushed: int, dead: Counter[str], acked: int, seconds: float) -> None:
        """Count pushed outputs and dead letters; observe the push phase and latency."""
        m = self.metrics
        m.observe_phase("push", seconds)
        if pushed:
            m.packets_out(pushed)
        for reason, n in dead.items():
            m.dead_lettered(reason, n)
        if self._last_ts:
            m.observe_end_to_end(max(time.time() - self._last_ts[0], 0.0))
            self._last_ts = []

    def delivery_failed(self, endpoint: str, error: Exception, parked: int) -> None:
        """Count outputs that could not be delivered on this try."""
        self.metrics.packets_failed("delivery_error", parked)
