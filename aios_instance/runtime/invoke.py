"""``RuntimeInvoker``: the in-process ingest's way into the block (``ingest.base.Invoker``).

``POST /infer`` and WebSocket messages run on the same ``Pipeline`` as the Redis worker, under
its lock: user code is never called by two threads at once, and the watchdog times these
calls as it times queue jobs. Outputs are answered to the caller, not routed (the caller is
where they go). Failures are dead-lettered (one LPUSH of the record to ``{BLOCK_ID}_dead``)
and counted with ``ingress`` as queue failures are.

A block with a Muxer is the exception: a group joins packets from every ingress and every
replica, which only the input list can do, so its jobs are enqueued there (``queued``) and the
group's output goes where its ``output_ptr`` routes it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from .. import keys
from ..ingest.base import Reply
from ..packet import AIOSPacket
from .deadletter import DeadLetters
from .instruments import RuntimeMetrics
from .outcome import PipelineResult
from .pipeline import Pipeline

__all__ = ["RuntimeInvoker"]

log = logging.getLogger(__name__)

_LOG_EVERY_S = 10.0  # at most one log line per reason this often


class RuntimeInvoker:
    """Runs ingest jobs on the runtime's pipeline (thread-safe)."""

    def __init__(
        self,
        pipeline: Pipeline,
        redis: Any,
        records: DeadLetters,
        metrics: RuntimeMetrics,
    ) -> None:
        self.pipeline = pipeline
        self.redis = redis
        self.records = records
        self.metrics = metrics
        self.queued = pipeline.muxer is not None
        self._inputs = keys.inputs(records.block_id)
        self._dead = keys.dead_letters(records.block_id)
        self._logged: dict[str, float] = {}

    def invoke(self, packet: AIOSPacket, *, ingress: str, is_ws: bool = False) -> Reply:
        self.metrics.packets_in(1, ingress)
        if self.queued:
            self.redis.lpush(self._inputs, packet.SerializeToString())
            return Reply(queued=True)
        # No bytes: serialized only for a failure's record (the watchdog, finding this job
        # hung, has none to dead-letter: the caller had its 504 and the record with it).
        result = self.pipeline.process_packet(packet, b"", is_ws=is_ws)
        return self._reply(result, packet, ingress)

    def timed_out(self, packet: AIOSPacket, *, ingress: str, after_s: float) -> None:
        reason = f"the {ingress} caller stopped waiting after {after_s:g}s (AIOS_INFER_TIMEOUT_S)"
        record = self.records.record("timeout", "on_data", reason, (packet.SerializeToString(),))
        self._dead_letter([record.data], "timeout", ingress, reason)

    def _reply(self, result: PipelineResult, packet: AIOSPacket, ingress: str) -> Reply:
        m = self.metrics
        if result.held:
            m.held(result.held, ingress)
        outputs = tuple(o.data for o in result.outputs)
        if outputs:
            m.packets_out(len(outputs), ingress)
        if not result.failures:
            return Reply(outputs, result.held)
        for failure in result.failures:
            m.packets_failed(failure.outcome.value, 1, ingress)
        first = result.failures[0]
        raw = (packet.SerializeToString(),)  # the job as it came, to be replayed
        records = [self.records.failure(replace(f, packets=raw)).data for f in result.failures]
        self._dead_letter(records, first.outcome.value, ingress, first.reason)
        raised = first.traceback is not None
        return Reply(
            outputs, result.held, outcome=first.outcome.value, reason=first.reason, raised=raised
        )

    def _dead_letter(self, records: list[bytes], outcome: str, ingress: str, reason: str) -> None:
        try:
            self.redis.lpush(self._dead, *records)
        except Exception as exc:  # the caller still gets its answer; the log says what was lost
            log.error("could not dead-letter a failed %s job (%s): %s", ingress, reason, exc)
            return
        self.metrics.dead_lettered(outcome, len(records), ingress)
        now = time.monotonic()
        if now - self._logged.get(outcome, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self._logged[outcome] = now
            log.warning("%s job dead-lettered (%s): %s", ingress, outcome, reason)
