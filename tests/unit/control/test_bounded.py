"""The control API's connection bounds (``bounded.py``), against a real runtime's API over raw
sockets to 127.0.0.1: idle keep-alive connections and slow requests are closed in time, and
connections past the limit are closed on accept."""

from __future__ import annotations

import time

import httpx

from aios_instance.embedded import EmbeddedRedis
from aios_instance.runtime.block import Runtime
from tests.support import close_times, closed_by_peer, connect, eventually, read_response
from tests.unit.control.support import ControlBlock, PassThrough, running

LIVE = b"GET /live HTTP/1.1\r\nHost: t\r\n\r\n"


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def series(runtime: Runtime, name: str, **labels: str) -> float:
    return runtime.metrics.sample(name, {"server": "api", **labels}) or 0.0


def no_connections(runtime: Runtime) -> bool:
    """The probes of ``running`` have hung up (httpx closes them as it goes)."""
    return series(runtime, "aios_control_connections") == 0


def test_200_idle_keep_alive_connections_are_closed_after_the_idle_timeout(
    redis_server: EmbeddedRedis,
) -> None:
    idle_s = 0.5  # uvicorn's own keep-alive timeout is 5 s: the bound below fails with it
    bounds = {"control_idle_timeout_s": idle_s, "control_header_timeout_s": 30.0}
    with running(PassThrough, redis_server, control_max_connections=300, **bounds) as (rt, base):
        eventually(lambda: no_connections(rt), what="the start-up probes to hang up")
        socks, sent = [], []
        try:
            for _ in range(200):
                sock = connect(port_of(base))
                socks.append(sock)
                sent.append(time.monotonic())
                sock.sendall(LIVE)
                assert read_response(sock) == (200, b'{"success":true}')
            assert series(rt, "aios_control_connections") == 200
            closed = close_times(socks, timeout_s=idle_s + 3.0)
            assert len(closed) == 200, f"{200 - len(closed)} idle connections still open"
            for sock, started in zip(socks, sent, strict=True):
                assert closed[sock] - started >= idle_s * 0.95  # not before the idle timeout
            timed_out = series(rt, "aios_control_connections_closed_total", reason="idle_timeout")
            assert timed_out == 200
            eventually(lambda: no_connections(rt), what="the gauge to come back to 0")
        finally:
            for sock in socks:
                sock.close()


def test_a_slowloris_and_a_silent_connection_are_closed_after_the_header_timeout(
    redis_server: EmbeddedRedis,
) -> None:
    header_s = 0.6
    bounds = {"control_idle_timeout_s": 30.0, "control_header_timeout_s": header_s}
    with running(PassThrough, redis_server, **bounds) as (rt, base):
        with connect(port_of(base)) as silent, connect(port_of(base)) as slow:
            started = time.monotonic()
            slow.sendall(b"GET /live HTTP/1.1\r\n")
            header = b"X-Padding: " + b"a" * 1000  # one byte per 50 ms: 50 s in all
            for i, byte in enumerate(header):
                slow.sendall(bytes([byte]))
                # The pace of the dribble; returns early when the server hangs up.
                if closed_by_peer(slow, 0.05):
                    break
                assert time.monotonic() - started < header_s + 3.0, f"still open after {i}"
            elapsed_s = time.monotonic() - started
            assert header_s * 0.95 <= elapsed_s < header_s + 3.0
            assert closed_by_peer(silent, 3.0)  # sent nothing at all: the same deadline
        reason = "header_timeout"
        closed = series(rt, "aios_control_connections_closed_total", reason=reason)
        assert closed == 2


def test_a_request_in_time_is_served_and_a_slow_handler_is_not_cut(
    redis_server: EmbeddedRedis,
) -> None:
    header_s = 0.3
    bounds = {"control_idle_timeout_s": 30.0, "control_header_timeout_s": header_s}
    with running(ControlBlock, redis_server, **bounds) as (rt, base):
        block = rt.block
        assert isinstance(block, ControlBlock)
        with connect(port_of(base)) as sock:
            body = b'{"mgmt_action": "wait"}'
            head = b"POST /mgmt HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            eventually(lambda: block.mgmt_waiting == 1, what="management() to start")
            open_one = lambda: series(rt, "aios_control_connections") == 1  # noqa: E731
            eventually(open_one, what="the connection counted while its request runs")
            # The handler outlives the header timeout: no deadline runs while it works.
            assert not closed_by_peer(sock, header_s * 3)
            block.mgmt_release.set()
            assert read_response(sock) == (200, b'{"success":true,"data":{"released":true}}')
            sock.sendall(LIVE)  # kept alive: the next request on the same connection
            assert read_response(sock)[0] == 200
        closed = series(rt, "aios_control_connections_closed_total", reason="header_timeout")
        assert closed == 0


def test_connections_past_the_limit_are_closed_at_once(redis_server: EmbeddedRedis) -> None:
    bounds = {"control_header_timeout_s": 30.0, "control_max_connections": 4}
    with running(PassThrough, redis_server, **bounds) as (rt, base):
        eventually(lambda: no_connections(rt), what="the start-up probes to hang up")
        held = [connect(port_of(base)) for _ in range(4)]
        try:
            eventually(lambda: series(rt, "aios_control_connections") == 4, what="4 open")
            with connect(port_of(base)) as extra:
                assert closed_by_peer(extra, 2.0)
            assert series(rt, "aios_control_connections_refused_total") == 1
        finally:
            for sock in held:
                sock.close()
        eventually(lambda: no_connections(rt), what="the held connections to be gone")
        assert httpx.get(base + "/live", timeout=5).status_code == 200
