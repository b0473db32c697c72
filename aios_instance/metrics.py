"""Block metrics: a private Prometheus registry, the runtime's own metrics, and exporters.

* :class:`AIOSMetrics` is ``context.metrics``: register counters, gauges and histograms by
  name, then update them by name (the spec's API). Every instance owns its
  ``CollectorRegistry``; nothing is ever put on prometheus_client's global registry.
* :class:`RuntimeMetrics` registers the runtime's ``aios_*`` metrics on the same registry and
  offers one cheap method per event, called by hooks around the processing loop.
* :class:`MetricsExporter` LPUSHes a JSON snapshot to ``NODE_METRICS`` periodically;
  :meth:`AIOSMetrics.serve_http` serves the Prometheus text exposition.

See ``docs/metrics.md`` for every metric name, type and label.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import start_http_server as _start_http_server

__all__ = [
    "FAILURE_REASONS",
    "PHASES",
    "AIOSMetrics",
    "MetricsExporter",
    "MetricsServer",
    "RuntimeMetrics",
    "UnknownMetricError",
    "flatten",
    "sample_key",
]

log = logging.getLogger(__name__)

Kind = Literal["counter", "gauge", "histogram"]
Metric = Counter | Gauge | Histogram
#: Label values for an update: a mapping name → value, a sequence of values in
#: ``labelnames`` order, or a single ``str`` for a metric with exactly one label.
Labels = Mapping[str, object] | Sequence[object] | None


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class UnknownMetricError(KeyError, ValueError):
    """An update names a metric that was never registered (catchable as KeyError or ValueError)."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class _Spec:
    """What a registration asks for; re-registering must ask for the same."""

    kind: Kind
    labelnames: tuple[str, ...]
    buckets: tuple[float, ...] = ()


@dataclass(frozen=True)
class _Entry:
    name: str  # as first registered
    spec: _Spec
    metric: Metric


def _family_name(kind: Kind, name: str) -> str:
    """The name prometheus_client files a metric under (it drops a counter's ``_total``)."""
    if kind == "counter" and name.endswith("_total"):
        return name[: -len("_total")]
    return name


def _norm_buckets(buckets: Iterable[float] | None) -> tuple[float, ...]:
    values = [float(b) for b in (buckets if buckets is not None else Histogram.DEFAULT_BUCKETS)]
    if not values or values[-1] != float("inf"):
        values.append(float("inf"))
    return tuple(values)


class AIOSMetrics:
    """Register and update Prometheus metrics by name on a private registry (thread-safe)."""

    def __init__(
        self,
        block_id: str = "",
        instance_id: str = "",
        registry: CollectorRegistry | None = None,
        node_id: str = "",
    ) -> None:
        self.block_id = block_id
        self.instance_id = instance_id
        self.node_id = node_id  # the snapshot's nodeId when snapshot() is given none
        self._registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    @property
    def registry(self) -> CollectorRegistry:
        """The private ``CollectorRegistry`` every metric of this instance lives on."""
        return self._registry

    # -- registration ---------------------------------------------------------------------

    def register_counter(
        self, name: str, documentation: str, labelnames: Sequence[str] | None = None
    ) -> Counter:
        """Register a counter; ``name`` may end in ``_total`` (it is not doubled)."""
        entry = self._register("counter", name, documentation, labelnames, None)
        assert isinstance(entry.metric, Counter)
        return entry.metric

    def register_gauge(
        self, name: str, documentation: str, labelnames: Sequence[str] | None = None
    ) -> Gauge:
        """Register a gauge."""
        entry = self._register("gauge", name, documentation, labelnames, None)
        assert isinstance(entry.metric, Gauge)
        return entry.metric

    def register_histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] | None = None,
        buckets: Sequence[float] | None = None,
    ) -> Histogram:
        """Register a histogram; ``buckets=None`` means prometheus_client's latency buckets."""
        entry = self._register("histogram", name, documentation, labelnames, buckets)
        assert isinstance(entry.metric, Histogram)
        return entry.metric

    def _register(
        self,
        kind: Kind,
        name: str,
        documentation: str,
        labelnames: Sequence[str] | None,
        buckets: Sequence[float] | None,
    ) -> _Entry:
        _check_names(name, labelnames)
        norm = _norm_buckets(buckets) if kind == "histogram" else ()
        wanted = _Spec(kind, tuple(labelnames or ()), norm)
        key = _family_name(kind, name)
        with self._lock:
            existing = self._entries.get(key)
            if existing is not None:
                _check_same(name, existing, wanted)
                return existing
            entry = _Entry(name, wanted, self._create(wanted, name, documentation))
            self._entries[key] = entry
            return entry

    def _create(self, spec: _Spec, name: str, documentation: str) -> Metric:
        reg, names = self._registry, spec.labelnames
        try:
            if spec.kind == "counter":
                return Counter(name, documentation, names, registry=reg)
            if spec.kind == "gauge":
                return Gauge(name, documentation, names, registry=reg)
            return Histogram(name, documentation, names, registry=reg, buckets=spec.buckets)
        except ValueError as exc:
            raise ValueError(f"cannot register {spec.kind} {name!r}: {exc}") from exc

    # -- updates --------------------------------------------------------------------------

    def increment_counter(self, name: str, amount: float = 1, labels: Labels = None) -> None:
        """Add ``amount`` (>= 0) to a registered counter."""
        self._child(name, "counter", labels).inc(amount)

    def set_gauge(self, name: str, value: float, labels: Labels = None) -> None:
        """Set a registered gauge to ``value``."""
        self._child(name, "gauge", labels).set(value)

    def observe_histogram(self, name: str, value: float, labels: Labels = None) -> None:
        """Record one observation in a registered histogram."""
        self._child(name, "histogram", labels).observe(value)

    def _lookup(self, name: str, kind: Kind) -> _Entry:
        entry = self._entries.get(name) or self._entries.get(_family_name("counter", name))
        if entry is None:
            raise UnknownMetricError(
                f"metric {name!r} is not registered; register it first with register_{kind}()"
            )
        if entry.spec.kind != kind:
            raise ValueError(f"metric {name!r} is a {entry.spec.kind}, not a {kind}")
        return entry

    def _child(self, name: str, kind: Kind, labels: Labels) -> Any:
        entry = self._lookup(name, kind)
        labelnames = entry.spec.labelnames
        if not labelnames:
            if labels:
                raise ValueError(f"metric {name!r} has no labels, but labels={labels!r} was given")
            return entry.metric
        return entry.metric.labels(*_label_values(name, labelnames, labels))

    # -- reading --------------------------------------------------------------------------

    def expose(self) -> bytes:
        """The Prometheus text exposition of every metric on this registry."""
        return generate_latest(self._registry)

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample's value by its exposition name (e.g. ``x_total``, ``h_count``), or None."""
        return self._registry.get_sample_value(name, dict(labels) if labels else None)

    def snapshot(
        self, node_id: str = "", hardware: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The NODE_METRICS document: identity, a timestamp, flattened samples, hardware.

        ``nodeId`` is ``node_id``, else ``self.node_id`` (the runtime sets it from
        ``AIOS_NODE_ID`` or the allocation's ``node_id``).
        """
        return {
            "blockId": self.block_id,
            "instanceId": self.instance_id,
            "nodeId": node_id or self.node_id,
            "type": "instance",
            "timestamp": time.time(),
            "metrics": flatten(self._registry),
            "hardware": dict(hardware) if hardware else {},
        }

    def serve_http(self, port: int, addr: str = "0.0.0.0") -> MetricsServer:
        """Serve this registry's exposition over HTTP on a daemon thread (``port=0``: any)."""
        server, thread = _start_http_server(port, addr=addr, registry=self._registry)
        log.info("serving Prometheus metrics on %s:%d", addr, server.server_port)
        return MetricsServer(server, thread)


def _check_names(name: str, labelnames: Sequence[str] | None) -> None:
    """Classic Prometheus names only, so exposition, samples and snapshot keys all agree."""
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"invalid metric name {name!r}: use letters, digits, '_' and ':'")
    if isinstance(labelnames, str):
        raise TypeError(f"labelnames of {name!r} must be a sequence of names, not a str")
    for label in labelnames or ():
        if not isinstance(label, str) or not _LABEL_NAME.fullmatch(label) or label[:2] == "__":
            raise ValueError(f"invalid label name {label!r} for metric {name!r}")


def _check_same(name: str, entry: _Entry, wanted: _Spec) -> None:
    """Idempotent re-registration must agree on type, label names and buckets."""
    existing = entry.spec
    # "x" and "x_total" are one counter family: say which spelling holds it
    what = repr(name) if entry.name == name else f"{name!r} (registered as {entry.name!r})"
    if existing.kind != wanted.kind:
        raise ValueError(
            f"metric {what} is already registered as a {existing.kind}, not a {wanted.kind}"
        )
    if existing.labelnames != wanted.labelnames:
        raise ValueError(
            f"metric {what} is already registered with labelnames {list(existing.labelnames)}, "
            f"not {list(wanted.labelnames)}"
        )
    if existing.buckets != wanted.buckets:
        raise ValueError(
            f"histogram {what} is already registered with buckets {list(existing.buckets)}"
        )


def _label_values(name: str, labelnames: tuple[str, ...], labels: Labels) -> list[str]:
    """Label values in ``labelnames`` order, with a clear error for any mismatch."""
    if labels is None:
        raise ValueError(f"metric {name!r} has labels {list(labelnames)}; pass labels=")
    if isinstance(labels, Mapping):
        if set(labels) != set(labelnames):
            raise ValueError(
                f"metric {name!r} takes labels {sorted(labelnames)}, got {sorted(map(str, labels))}"
            )
        return [str(labels[n]) for n in labelnames]
    values = [labels] if isinstance(labels, str) else list(labels)
    if len(values) != len(labelnames):
        raise ValueError(
            f"metric {name!r} takes {len(labelnames)} label values {list(labelnames)}, "
            f"got {len(values)}"
        )
    return [str(v) for v in values]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def sample_key(name: str, labels: Mapping[str, str]) -> str:
    """``name{a="x",b="y"}`` with sorted labels; just ``name`` when there are none."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def flatten(registry: CollectorRegistry) -> dict[str, float]:
    """Every sample as ``sample_key → value``; ``*_created`` timestamps are left out."""
    out: dict[str, float] = {}
    for family in registry.collect():
        created = family.name + "_created"
        for s in family.samples:
            if s.name != created:
                out[sample_key(s.name, s.labels)] = float(s.value)
    return out


class MetricsServer:
    """Handle of :meth:`AIOSMetrics.serve_http`; ``close()`` stops the server."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        """The bound TCP port (useful after ``serve_http(0)``)."""
        return int(self.server.server_port)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop serving, close the socket and join the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout_s)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------
# The runtime's own metrics
# ---------------------------------------------------------------------------------------

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
)
PHASE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # fmt: skip
END_TO_END_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                      1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)  # fmt: skip
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
        self._in = m.register_counter("aios_packets_in_total", "Packets claimed from the input")
        self._out = m.register_counter("aios_packets_out_total", "Output packets pushed")
        self._held = m.register_counter("aios_packets_held_total", "on_data returned (True, None)")
        self._redeliveries = m.register_counter(
            "aios_redeliveries_total", "Packets delivered again after a crash or lease expiry"
        )
        failed = m.register_counter("aios_packets_failed_total", "Failed packets", ["reason"])
        dead = m.register_counter("aios_dead_lettered_total", "Dead-lettered packets", ["reason"])
        self._failed = _bind(failed, "reason", FAILURE_REASONS)
        self._dead = _bind(dead, "reason", FAILURE_REASONS)
        self._mux_expired = m.register_counter(
            "aios_muxer_expired_total", "Muxer groups expired incomplete"
        )
        self._event_failed = m.register_counter(
            "aios_event_push_failed_total", "Failed pushes to the events queue"
        )

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

    # counters
    def packets_in(self, n: int = 1) -> None:
        """Called when ``n`` packets were claimed."""
        self._in.inc(n)

    def packets_out(self, n: int = 1) -> None:
        """Called when ``n`` output packets were pushed."""
        self._out.inc(n)

    def packets_failed(self, reason: str, n: int = 1) -> None:
        """Called when ``n`` packets failed for ``reason`` (one of FAILURE_REASONS)."""
        _pick(self._failed, reason, "reason").inc(n)

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        """Called when ``n`` packets went to the dead-letter list for ``reason``."""
        _pick(self._dead, reason, "reason").inc(n)

    def held(self, n: int = 1) -> None:
        """Called when on_data returned ``(True, None)`` for ``n`` entries."""
        self._held.inc(n)

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

    def set_muxer_open_groups(self, n: int) -> None:
        """Called with the number of incomplete muxer groups."""
        self._open_groups.set(n)


def _pick(children: Mapping[str, Any], value: str, label: str) -> Any:
    try:
        return children[value]
    except KeyError:
        raise ValueError(f"unknown {label} {value!r}; expected one of {sorted(children)}") from None


# Kept importable from here; the exporter lives in its own module.
from .control.exporter import MetricsExporter  # noqa: E402
