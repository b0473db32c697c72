"""The ingest's ``aios_ingest_*`` and ``aios_stream_*`` metrics, registered once on the
block's registry and shared by the HTTP, WebSocket and gRPC ingest.

See ``docs/metrics.md`` for every name and label.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..metrics import AIOSMetrics

__all__ = ["INGRESSES", "IngestMetrics"]

#: How a job came in: ``queue`` (the Redis input list) and the ingest's three ways.
INGRESSES = ("queue", "http", "ws", "grpc")

_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_SECONDS_BUCKETS_SLOW = (2.5, 5.0, 10.0, 30.0, 60.0)


class IngestMetrics:
    """Requests by ingress and outcome, their time, what is in progress, and the stream
    bounds (messages dropped, connections)."""

    def __init__(self, metrics: AIOSMetrics) -> None:
        m = metrics
        self._requests = m.register_counter(
            "aios_ingest_requests_total",
            "Ingest requests (HTTP /infer, WebSocket messages, gRPC infer) by how they ended",
            ["ingress", "code"],
        )
        self._seconds = m.register_histogram(
            "aios_ingest_seconds",
            "Time from an ingest request read to its answer",
            ["ingress"],
            _SECONDS_BUCKETS + _SECONDS_BUCKETS_SLOW,
        )
        self._in_progress = m.register_gauge(
            "aios_ingest_in_progress",
            "Ingest jobs running or waiting (http: the ingest runner's, WebSocket jobs included)",
            ["ingress"],
        )
        self._dropped = m.register_counter(
            "aios_stream_messages_dropped_total",
            "write_ws messages not sent: no client for the session, or its send queue was full",
            ["reason"],
        )
        self._connections = m.register_gauge(
            "aios_ws_connections", "Open WebSocket connections (bound: AIOS_WS_MAX_CONNECTIONS)"
        )
        self._seconds_by = {i: self._seconds.labels(ingress=i) for i in INGRESSES}
        self._progress_by = {i: self._in_progress.labels(ingress=i) for i in INGRESSES}
        self._codes: dict[tuple[str, str], Any] = {}

    def request(self, ingress: str, code: str | int, seconds: float) -> None:
        """One request ended with ``code`` (an HTTP status or a gRPC status name)."""
        key = (ingress, str(code))
        child = self._codes.get(key)
        if child is None:  # a handful of codes per ingress: bound by construction
            child = self._codes.setdefault(key, self._requests.labels(ingress=key[0], code=key[1]))
        child.inc()
        self._seconds_by[ingress].observe(seconds)

    def track(self, ingress: str, count: Callable[[], float]) -> None:
        """Read ``ingress``'s requests in progress from ``count`` at each scrape."""
        self._progress_by[ingress].set_function(count)

    def started(self, ingress: str) -> None:
        """A request was admitted."""
        self._progress_by[ingress].inc()

    def finished(self, ingress: str) -> None:
        """An admitted request ended (answered, timed out or refused)."""
        self._progress_by[ingress].dec()

    def dropped(self, reason: str, n: int = 1) -> None:
        """``n`` write_ws messages were not sent (``no_client`` or ``queue_full``)."""
        self._dropped.labels(reason=reason).inc(n)

    def set_connections(self, n: int) -> None:
        """The number of open WebSocket connections."""
        self._connections.set(n)
