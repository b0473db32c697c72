"""The metrics server on METRICS_PORT (``_metrics_http.py``) over raw sockets to 127.0.0.1:
scrapes work, slow or silent clients are closed at the header deadline, and connections past
the limit are closed on accept."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from aios_instance._connections import ConnectionBounds
from aios_instance.metrics import AIOSMetrics, MetricsServer
from aios_instance.settings import Settings
from tests.support import closed_by_peer, connect, eventually

HEADER_S = 0.5


@pytest.fixture
def metrics() -> AIOSMetrics:
    return AIOSMetrics(block_id="b", instance_id="i")


@pytest.fixture
def server(metrics: AIOSMetrics) -> Iterator[MetricsServer]:
    bounds = ConnectionBounds(idle_timeout_s=30.0, header_timeout_s=HEADER_S, max_connections=3)
    with metrics.serve_http(0, addr="127.0.0.1", bounds=bounds) as s:
        yield s


def series(metrics: AIOSMetrics, name: str, **labels: str) -> float:
    return metrics.sample(name, {"server": "metrics", **labels}) or 0.0


def test_a_slowloris_and_a_silent_client_are_closed_at_the_header_deadline(
    metrics: AIOSMetrics, server: MetricsServer
) -> None:
    with connect(server.port) as silent, connect(server.port) as slow:
        started = time.monotonic()
        slow.sendall(b"GET /metrics HTTP/1.1\r\n")
        for byte in b"X-Padding: " + b"a" * 1000:  # one byte per 50 ms: 50 s in all
            try:
                slow.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if closed_by_peer(slow, 0.05):  # the pace; returns early on a hang-up
                break
            assert time.monotonic() - started < HEADER_S + 3.0, "the slowloris is still served"
        assert HEADER_S * 0.95 <= time.monotonic() - started < HEADER_S + 3.0
        assert closed_by_peer(silent, 3.0)
    reason = "header_timeout"
    closed = "aios_control_connections_closed_total"
    eventually(
        lambda: series(metrics, closed, reason=reason) == 2, what="both counted as header timeouts"
    )
    eventually(lambda: series(metrics, "aios_control_connections") == 0, what="gauge at 0")


def test_connections_past_the_limit_are_closed_at_once_and_scrapes_work_after(
    metrics: AIOSMetrics, server: MetricsServer
) -> None:
    held = [connect(server.port) for _ in range(3)]
    try:
        eventually(lambda: series(metrics, "aios_control_connections") == 3, what="3 open")
        with connect(server.port) as extra:
            assert closed_by_peer(extra, 1.0)  # well before the 0.5 s + slack of a timeout
        assert series(metrics, "aios_control_connections_refused_total") == 1
    finally:
        for sock in held:
            sock.close()
    eventually(lambda: series(metrics, "aios_control_connections") == 0, what="gauge at 0")
    r = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
    assert r.status_code == 200 and "aios_control_connections_refused_total" in r.text


def test_the_default_bounds_are_the_settings_defaults() -> None:
    assert ConnectionBounds() == ConnectionBounds.from_settings(Settings(block_id="b"))
