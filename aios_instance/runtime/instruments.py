"""The runtime's own ``aios_*`` metrics, registered on the block's ``AIOSMetrics`` registry,
with one cheap method per event (children pre-bound) for the hooks around the loop.

See ``docs/metrics.md`` for every metric name, type and label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter, Histogram

from ..ingest.metrics import INGRESSES
from ..metrics import AIOSMetrics

__all__ = ["CALL_PHASES", "FAILURE_REASONS", "PHASES", "RuntimeMetrics"]


#: Observed once per claimed batch (the batch's total time in that phase), never per packet:
#: ``preprocess`` includes decoding and JSON validation; ``push`` is the pipelined commit.
PHASES = ("preprocess", "on_data", "route", "push")
FAILURE_REASONS = (
    "bad_input",
    "user_error",
    "routing_error",
    "delivery_error",
    "expired",
    "max_deliveries",
    "timeout",
    "routing_loop",
)
#: The user calls the watchdog times (``aios_job_timeouts_total{phase}``).
CALL_PHASES = ("on_preprocess", "on_data", "on_data_batch", "flush")


def _decades(first_exponent: int, last_exponent: int) -> tuple[float, ...]:
    """1, 2.5, 5 times each power of ten from 10**first to 10**last (Prometheus-style)."""
    exponents = range(first_exponent, last_exponent + 1)
    return tuple(round(m * 10.0**e, 6) for e in exponents for m in (1, 2.5, 5))


PHASE_BUCKETS = (*_decades(-4, 0), 10.0, 30.0, 60.0)
END_TO_END_BUCKETS = (*_decades(-3, 0), 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(11))  # 1, 2, 4, ..., 1024


def _bind(metric: Counter | Histogram, label: str, values: Iterable[str]) -> dict[str, Any]:
    return {v: metric.labels(**{label: v}) for v in values}


class RuntimeMetrics:
    """The runtime's ``aios_*`` metrics; one cheap call per event (children pre-bound)."""

    def __init__(self, metrics: AIOSMetrics, sidecars: Iterable[str] = ()) -> None:
        self._register_counters(metrics)
        self._register_histograms(metrics)
        self._register_gauges(metrics)
        self._sidecar_metric = metrics.register_counter(
            "aios_sidecar_push_failed_total", "Failed pushes to a sidecar", ["sidecar"]
        )
        self._sidecar = _bind(self._sidecar_metric, "sidecar", sidecars)

    def _register_counters(self, m: AIOSMetrics) -> None:
        packets_in = m.register_counter(
            "aios_packets_in_total", "Packets taken in (claimed, or by the ingest)", ["ingress"]
        )
        out = m.register_counter(
            "aios_packets_out_total", "Output packets pushed (or answered)", ["ingress"]
        )
        held = m.register_counter(
            "aios_packets_held_total", "on_data returned (True, None)", ["ingress"]
        )
        self._in = _bind(packets_in, "ingress", INGRESSES)
        self._out = _bind(out, "ingress", INGRESSES)
        self._held = _bind(held, "ingress", INGRESSES)
        self._redeliveries = m.register_counter(
            "aios_redeliveries_total", "Packets delivered again after a crash or lease expiry"
        )
        failed = m.register_counter(
            "aios_packets_failed_total", "Failed packets", ["ingress", "reason"]
        )
        dead = m.register_counter(
            "aios_dead_lettered_total", "Dead-lettered packets", ["ingress", "reason"]
        )
        self._failed = _bind2(failed, FAILURE_REASONS)
        self._dead = _bind2(dead, FAILURE_REASONS)
        self._mux_expired = m.register_counter(
            "aios_muxer_expired_total", "Muxer groups expired incomplete"
        )
        self._event_failed = m.register_counter(
            "aios_event_push_failed_total", "Failed pushes to the events queue"
        )
        timeouts = m.register_counter(
            "aios_job_timeouts_total", "User calls past AIOS_JOB_TIMEOUT_S", ["phase"]
        )
        self._timeouts = _bind(timeouts, "phase", CALL_PHASES)

    def _register_histograms(self, m: AIOSMetrics) -> None:
        phase = m.register_histogram(
            "aios_phase_seconds", "Time spent per pipeline phase", ["phase"], PHASE_BUCKETS
        )
        self._phase = _bind(phase, "phase", PHASES)
        self._e2e = m.register_histogram(
            "aios_end_to_end_seconds", "Packet ts to output pushed", None, END_TO_END_BUCKETS
        )
        self._batch = m.register_histogram(
            "aios_batch_size", "Packets per claim batch", None, BATCH_SIZE_BUCKETS
        )

    def _register_gauges(self, m: AIOSMetrics) -> None:
        self._depth = m.register_gauge("aios_queue_depth", "Packets waiting in the input list")
        self._oldest = m.register_gauge(
            "aios_oldest_age_seconds", "Age of the oldest waiting packet"
        )
        self._in_flight = m.register_gauge("aios_in_flight", "Packets claimed, not yet acked")
        self._open_groups = m.register_gauge("aios_muxer_open_groups", "Incomplete muxer groups")
        self._parked = m.register_gauge(
            "aios_parked_outputs", "Outputs waiting for an endpoint (bound: MAX_PARKED)"
        )
        self._parked_bytes = m.register_gauge(
            "aios_parked_bytes", "Bytes of outputs waiting for an endpoint (MAX_PARKED_BYTES)"
        )
        self._endpoints = m.register_gauge(
            "aios_endpoints", "Endpoints with a sender thread (bound: 64)"
        )
        self._routing_cache = m.register_gauge(
            "aios_output_ptr_cache_entries",
            "Parsed output_ptrs cached (bound: 4,096 of at most 4,096 characters)",
        )

    # counters (``ingress``: one of INGRESSES, how the packets came in)
    def packets_in(self, n: int = 1, ingress: str = "queue") -> None:
        """Called when ``n`` packets were claimed (or taken in by the ingest)."""
        self._in[ingress].inc(n)

    def packets_out(self, n: int = 1, ingress: str = "queue") -> None:
        """Called when ``n`` output packets were pushed (or answered to an ingest caller)."""
        self._out[ingress].inc(n)

    def packets_failed(self, reason: str, n: int = 1, ingress: str = "queue") -> None:
        """Called when ``n`` packets failed for ``reason`` (one of FAILURE_REASONS)."""
        _pick2(self._failed, ingress, reason).inc(n)

    def dead_lettered(self, reason: str, n: int = 1, ingress: str = "queue") -> None:
        """Called when ``n`` packets went to the dead-letter list for ``reason``."""
        _pick2(self._dead, ingress, reason).inc(n)

    def held(self, n: int = 1, ingress: str = "queue") -> None:
        """Called when on_data returned ``(True, None)`` for ``n`` entries."""
        self._held[ingress].inc(n)

    def redeliveries(self, n: int = 1) -> None:
        """Called when ``n`` claimed packets had been delivered before."""
        self._redeliveries.inc(n)

    def muxer_expired(self, n: int = 1) -> None:
        """Called when ``n`` incomplete muxer groups expired."""
        self._mux_expired.inc(n)

    def sidecar_push_failed(self, name: str) -> None:
        """Called when a push to sidecar ``name`` failed."""
        child = self._sidecar.get(name)
        if child is None:
            child = self._sidecar.setdefault(name, self._sidecar_metric.labels(sidecar=name))
        child.inc()

    def job_timed_out(self, phase: str) -> None:
        """Called when a call of user code in ``phase`` (one of CALL_PHASES) ran past the
        job timeout."""
        _pick(self._timeouts, phase, "phase").inc()

    def event_push_failed(self) -> None:
        """Called when a push to the events queue failed."""
        self._event_failed.inc()

    # histograms
    def observe_phase(self, phase: str, seconds: float) -> None:
        """Called with the time one claimed batch spent in a phase (one of PHASES)."""
        _pick(self._phase, phase, "phase").observe(seconds)

    def observe_end_to_end(self, seconds: float) -> None:
        """Called with packet ts → output pushed; negative values (clock skew) count as 0."""
        self._e2e.observe(max(seconds, 0.0))

    def observe_batch_size(self, n: int) -> None:
        """Called with the size of one claim batch."""
        self._batch.observe(n)

    # gauges
    def set_queue_depth(self, n: int) -> None:
        """Called with the number of packets waiting in the input list."""
        self._depth.set(n)

    def set_oldest_age_s(self, seconds: float) -> None:
        """Called with the age of the oldest waiting packet."""
        self._oldest.set(seconds)

    def set_in_flight(self, n: int) -> None:
        """Called with the number of claimed, not yet acknowledged packets."""
        self._in_flight.set(n)

    def set_outbox(self, outputs: int, size: int, endpoints: int) -> None:
        """Called with the parked outputs, their bytes, and the endpoints with a sender."""
        self._parked.set(outputs)
        self._parked_bytes.set(size)
        self._endpoints.set(endpoints)

    def set_routing_cache(self, n: int) -> None:
        """Called with the number of parsed ``output_ptr``s cached."""
        self._routing_cache.set(n)

    def set_muxer_open_groups(self, n: int) -> None:
        """Called with the number of incomplete muxer groups."""
        self._open_groups.set(n)


def _bind2(metric: Counter, reasons: Iterable[str]) -> dict[tuple[str, str], Any]:
    return {(i, r): metric.labels(ingress=i, reason=r) for i in INGRESSES for r in reasons}


def _pick2(children: Mapping[tuple[str, str], Any], ingress: str, reason: str) -> Any:
    child = children.get((ingress, reason))
    if child is None:
        _pick(dict.fromkeys(INGRESSES), ingress, "ingress")
        _pick(dict.fromkeys(FAILURE_REASONS), reason, "reason")
    return child


def _pick(children: Mapping[Any, Any], value: Any, label: str) -> Any:
    try:
        return children[value]
    except KeyError:
        raise ValueError(f"unknown {label} {value!r}; expected one of {sorted(children)}") from None
