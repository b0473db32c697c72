"""Control API latency: how fast the probes answer while user callbacks pile up, while
health() hangs, while the pipeline is saturated, and how soon /ready notices a lost Redis.

Here the time taken is the behaviour under test (the unit tests in tests/unit/control assert
what answers and in which order, never how fast). Run with ``-s`` to see the figures that
docs/control.md quotes.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from aios_instance import OnDataResult, keys
from aios_instance.control import api as control_module
from aios_instance.embedded import EmbeddedRedis
from aios_instance.packet import make_packet
from aios_instance.runtime.block import Runtime
from tests.support import eventually
from tests.unit.control.support import ControlBlock, MgmtGate, PassThrough, running


@pytest.fixture(scope="module")
def served(redis_server: EmbeddedRedis) -> Iterator[tuple[Runtime, str, ControlBlock]]:
    with running(ControlBlock, redis_server) as (runtime, base):
        block = runtime.block
        assert isinstance(block, ControlBlock)
        yield runtime, base, block


def worst_of(client: httpx.Client, paths: tuple[str, ...], tries: int = 5) -> dict[str, float]:
    """The slowest of ``tries`` GETs of each path, in seconds (each must answer 200)."""
    worst: dict[str, float] = {}
    for path in paths:
        for _ in range(tries):
            t0 = time.perf_counter()
            r = client.get(path)
            worst[path] = max(worst.get(path, 0.0), time.perf_counter() - t0)
            assert r.status_code == 200, (path, r.text)
    return worst


def test_probes_stay_fast_while_slow_callbacks_pile_up(
    served: tuple[Runtime, str, ControlBlock],
) -> None:
    _, base, block = served
    threads = control_module.CALLBACK_THREADS
    admitted = threads + control_module.CALLBACK_BACKLOG
    n = 60
    block.mgmt_release.clear()
    gate = MgmtGate(base, n)
    try:
        eventually(lambda: block.mgmt_waiting == threads, what="every callback thread to be busy")
        eventually(lambda: gate.done() == n - admitted, what="the overflow to be turned away")
        with httpx.Client(base_url=base, timeout=10) as client:
            worst = worst_of(client, ("/live", "/ready", "/health", "/metrics"))
    finally:
        block.mgmt_release.set()
        gate.join()
    shown = ", ".join(f"{p} {t * 1e3:.1f} ms" for p, t in worst.items())
    print(f"\nworst probe latency with {n} slow /mgmt calls in flight: {shown}")
    assert max(worst.values()) < 0.5, worst


def test_slow_health_answers_503_on_time_and_the_other_probes_stay_fast(
    served: tuple[Runtime, str, ControlBlock], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base, block = served
    monkeypatch.setattr(control_module, "HEALTH_TIMEOUT_S", 1.0)
    block.health_mode = "slow"
    block.release.clear()
    elapsed: list[float] = []

    def probe() -> None:
        t0 = time.monotonic()
        assert httpx.get(base + "/health", timeout=10).status_code == 503
        elapsed.append(time.monotonic() - t0)

    threads = [threading.Thread(target=probe) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        eventually(lambda: block.health_running == 1, what="health() to be called")
        with httpx.Client(base_url=base, timeout=10) as client:
            worst = worst_of(client, ("/live", "/ready"))
        for t in threads:
            t.join(10)
    finally:
        block.release.set()
        block.health_mode = "ok"
    assert max(worst.values()) < 0.5, worst
    assert len(elapsed) == 3 and all(0.9 < e < 3.0 for e in elapsed), elapsed


def test_ready_notices_a_lost_redis_within_the_lease_ttl(
    redis_factory: Callable[[], EmbeddedRedis],
) -> None:
    server = redis_factory()
    with running(ControlBlock, server, lease_ttl_s=1.0) as (_, base):
        server.stop()
        stopped = time.monotonic()
        eventually(
            lambda: httpx.get(base + "/ready", timeout=2).status_code == 503,
            what="/ready to notice the lapsed lease",
        )
        # the lease was last renewed at most TTL/3 before the stop; it lapses TTL after that
        assert time.monotonic() - stopped < 2.5


class BusyBlock(PassThrough):
    """Burns 1 ms of CPU per job (holding the GIL like real Python inference code)."""

    def on_data(self, entry: Any) -> Any:
        end = time.perf_counter() + 0.001
        while time.perf_counter() < end:
            pass
        return True, OnDataResult(output={"done": True})

    def health(self) -> Any:
        return {"status": "healthy"}


def measure(client: httpx.Client, duration_s: float) -> list[float]:
    """Back-to-back GET /health for duration_s; the latencies in seconds."""
    latencies: list[float] = []
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        t0 = time.perf_counter()
        assert client.get("/health").status_code == 200
        latencies.append(time.perf_counter() - t0)
    return latencies


def summary(latencies: list[float]) -> str:
    q = statistics.quantiles(latencies, n=100)
    return (
        f"p50 {q[49] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms, max {max(latencies) * 1e3:.1f} ms"
        f" ({len(latencies)} requests)"
    )


def test_health_latency_while_saturated(redis_server: EmbeddedRedis) -> None:
    block_id = f"busy-{uuid.uuid4().hex[:8]}"
    out = f"{block_id}_out"
    r = redis.Redis.from_url(redis_server.url, protocol=2)
    raw = make_packet({"x": 1}).SerializeToString()
    try:
        with (
            running(BusyBlock, redis_server, block_id=block_id) as (_, base),
            httpx.Client(base_url=base, timeout=10) as c,
        ):
            idle = measure(c, 1.0)
            with r.pipeline(transaction=False) as pipe:
                for _ in range(20):
                    pipe.lpush(keys.inputs(block_id), *([raw] * 1000))
                pipe.execute()
            eventually(lambda: r.llen(out) > 0, what="the pipeline to start")
            done_before, t0 = r.llen(out), time.monotonic()
            loaded = measure(c, 3.0)
            rate = (r.llen(out) - done_before) / (time.monotonic() - t0)
        assert r.llen(keys.inputs(block_id)) > 0, "the queue drained: not saturated"
    finally:
        r.delete(keys.inputs(block_id), out)
        r.close()
    print(f"\n/health idle: {summary(idle)}")
    print(f"/health with 20k queued 1 ms jobs: {summary(loaded)}; pipeline {rate:.0f} jobs/s")
    assert rate > 100  # the pipeline kept working while probed
    assert max(loaded) < 1.0
