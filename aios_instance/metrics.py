"""Block metrics: a private Prometheus registry, the runtime's own metrics, and exporters.

* :class:`AIOSMetrics` is ``context.metrics``: register counters, gauges and histograms by
  name, then update them by name (the spec's API). Every instance owns its
  ``CollectorRegistry``; nothing is ever put on prometheus_client's global registry.
* :meth:`AIOSMetrics.serve_http` serves the Prometheus text exposition, with bounded
  connections (``_metrics_http.py``).

The runtime's own ``aios_*`` metrics are in ``runtime/instruments.py``; the ``NODE_METRICS``
exporter is in ``control/exporter.py``.

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

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from ._connections import ConnectionBounds, Connections
from ._metrics_http import MetricsServer, serve_metrics
from .errors import UnknownMetricError

__all__ = [
    "AIOSMetrics",
    "MetricsServer",
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
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
            _describe_process(registry, block_id, instance_id)
        self._registry = registry
        self._scraped = _WithoutCreated(registry)
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

    # ``labelnames=`` is the existing SDK's keyword for the label values: the same as labels=.

    def increment_counter(
        self, name: str, amount: float = 1, labels: Labels = None, *, labelnames: Labels = None
    ) -> None:
        """Add ``amount`` (>= 0) to a registered counter."""
        self._child(name, "counter", _labels(labels, labelnames)).inc(amount)

    def set_gauge(
        self, name: str, value: float, labels: Labels = None, *, labelnames: Labels = None
    ) -> None:
        """Set a registered gauge to ``value``."""
        self._child(name, "gauge", _labels(labels, labelnames)).set(value)

    def observe_histogram(
        self, name: str, value: float, labels: Labels = None, *, labelnames: Labels = None
    ) -> None:
        """Record one observation in a registered histogram."""
        self._child(name, "histogram", _labels(labels, labelnames)).observe(value)

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
        """The Prometheus text exposition of every metric on this registry (no ``_created``
        series)."""
        return generate_latest(self._scraped)  # type: ignore[arg-type,unused-ignore]

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

    def serve_http(
        self, port: int, addr: str = "0.0.0.0", bounds: ConnectionBounds | None = None
    ) -> MetricsServer:
        """Serve this registry's exposition over HTTP on a daemon thread (``port=0``: any).

        Connections are bounded by ``bounds`` (default: the ``AIOS_CONTROL_*`` settings'
        defaults; ``ConnectionBounds.from_settings(settings)`` for the configured ones) and
        counted in ``aios_control_connections*{server="metrics"}``.
        """
        bounds = bounds or ConnectionBounds()
        tracker = Connections(bounds.max_connections, self, "metrics")
        server = serve_metrics(self._scraped, port, addr, bounds, tracker)
        log.info("serving Prometheus metrics on %s:%d", addr, server.port)
        return server


def _describe_process(registry: CollectorRegistry, block_id: str, instance_id: str) -> None:
    """The process's own series (``process_*``: CPU, memory, file descriptors) and one
    ``aios_block_info{block_id, instance_id} 1`` that joins them to the block."""
    ProcessCollector(registry=registry)
    if block_id or instance_id:
        info = Info("aios_block", "The block and instance this process serves", registry=registry)
        info.info({"block_id": block_id, "instance_id": instance_id})


class _WithoutCreated:
    """The registry as it is scraped: without the ``*_created`` samples (a timestamp per
    series that doubles the exposition and that nothing here reads)."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Any]:
        for family in self._registry.collect():
            created = family.name + "_created"
            family.samples = [s for s in family.samples if s.name != created]
            yield family

    def restricted_registry(self, names: Iterable[str]) -> _WithoutCreated:
        """What ``?name[]=...`` asks for, still without ``_created``."""
        return _WithoutCreated(self._registry.restricted_registry(names))


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


def _labels(labels: Labels, labelnames: Labels) -> Labels:
    """An update's label values, given as ``labels=`` or as the existing SDK's ``labelnames=``."""
    if labelnames is None:
        return labels
    if labels is not None:
        raise TypeError("give the label values as labels= or as labelnames=, not both")
    return labelnames


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
