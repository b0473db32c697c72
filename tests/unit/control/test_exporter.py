"""MetricsExporter: snapshots pushed to NODE_METRICS on a real redis-server, a bounded list,
and a thread that survives a dead Redis, a failing client factory and a failing snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from aios_instance import _json, keys
from aios_instance.control.exporter import NODE_METRICS_MAX_LEN, MetricsExporter
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.metrics import AIOSMetrics
from tests.support import eventually

pytestmark = pytest.mark.timeout(30)

Snapshot = Callable[[], Mapping[str, Any]]
Factory = Callable[[], redis.Redis]


def quick_client(url: str) -> Factory:
    """A factory for clients that fail fast (no retries) so dead-Redis tests stay short."""

    def make() -> redis.Redis:
        return redis.Redis.from_url(
            url,
            protocol=2,
            socket_connect_timeout=1.0,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
        )

    return make


@pytest.fixture
def snapshot() -> Snapshot:
    """The runtime's kind of snapshot callable: the block's metrics and a hardware section."""
    metrics = AIOSMetrics(block_id="blk", instance_id="inst-1")
    metrics.register_counter("images_processed_total", "Images")
    metrics.increment_counter("images_processed_total", 2)
    return lambda: metrics.snapshot("node-a", {"cpu_percent": 1.0, "gpus": []})


@pytest.fixture
def exporters() -> Iterator[Callable[..., MetricsExporter]]:
    """Makes exporters and stops every one of them at teardown."""
    made: list[MetricsExporter] = []

    def make(snapshot: Snapshot, factory: Factory, **kwargs: Any) -> MetricsExporter:
        exporter = MetricsExporter(snapshot, factory, **kwargs)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.stop(5.0)


def test_pushes_the_snapshots_it_is_given(
    snapshot: Snapshot,
    redis_server: EmbeddedRedis,
    redis_client: redis.Redis,
    exporters: Callable[..., MetricsExporter],
) -> None:
    exporter = exporters(snapshot, quick_client(redis_server.url), interval_s=0.05).start()
    assert eventually(lambda: redis_client.llen(keys.NODE_METRICS) >= 2)
    exporter.stop(5.0)
    assert not exporter.alive
    newest = _json.loads(redis_client.lindex(keys.NODE_METRICS, 0) or b"")  # LPUSH: the left
    assert newest["type"] == "instance"
    assert (newest["blockId"], newest["instanceId"], newest["nodeId"]) == (
        "blk",
        "inst-1",
        "node-a",
    )
    assert newest["metrics"]["images_processed_total"] == 2.0
    assert newest["hardware"] == {"cpu_percent": 1.0, "gpus": []}
    assert exporter.pushes >= 2 and exporter.failures == 0


def test_stop_wakes_a_thread_that_waits_for_its_interval(
    snapshot: Snapshot, redis_server: EmbeddedRedis, exporters: Callable[..., MetricsExporter]
) -> None:
    exporter = exporters(snapshot, quick_client(redis_server.url), interval_s=3600).start()
    assert exporter.alive
    exporter.stop(5.0)  # joins for at most 5 s: an hour-long wait must have been cut short
    assert not exporter.alive
    assert exporter.pushes == 0


def test_push_once_with_max_len(
    snapshot: Snapshot, redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    exporter = MetricsExporter(snapshot, quick_client(redis_server.url), queue="M", max_len=2)
    try:
        assert all(exporter.push_once() for _ in range(4))
    finally:
        exporter.stop()
    assert redis_client.llen("M") == 2
    assert _json.loads(redis_client.lindex("M", 0) or b"")["blockId"] == "blk"


def test_the_list_is_bounded_by_default(
    snapshot: Snapshot, redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    redis_client.rpush(keys.NODE_METRICS, *[b"old"] * NODE_METRICS_MAX_LEN)
    exporter = MetricsExporter(snapshot, quick_client(redis_server.url))
    try:
        assert exporter.max_len == NODE_METRICS_MAX_LEN == 1000
        assert exporter.push_once() and exporter.push_once()
    finally:
        exporter.stop()
    assert redis_client.llen(keys.NODE_METRICS) == NODE_METRICS_MAX_LEN
    newest = redis_client.lrange(keys.NODE_METRICS, 0, 1)
    assert all(_json.loads(item)["type"] == "instance" for item in newest)
    assert redis_client.lindex(keys.NODE_METRICS, -1) == b"old"  # the oldest were trimmed
    with pytest.raises(ValueError, match="max_len"):
        MetricsExporter(snapshot, quick_client(redis_server.url), max_len=0)


def test_survives_a_dead_redis_and_recovers(
    snapshot: Snapshot, exporters: Callable[..., MetricsExporter]
) -> None:
    server = EmbeddedRedis(port=free_port())  # nothing listens on this port yet
    made: list[int] = []
    base = quick_client(server.url)

    def factory() -> redis.Redis:
        made.append(1)
        return base()

    exporter = exporters(snapshot, factory, interval_s=0.02).start()
    assert eventually(lambda: exporter.failures >= 3)
    assert exporter.alive and exporter.pushes == 0
    assert len(made) >= 3  # the client is made anew after each connection error
    with server:  # Redis comes up on that port: the same exporter starts delivering
        assert eventually(lambda: exporter.pushes >= 1)
        client = redis.Redis.from_url(server.url, protocol=2)
        try:
            assert client.llen(keys.NODE_METRICS) >= 1
        finally:
            client.close()
        exporter.stop(5.0)


def test_survives_a_failing_factory_and_snapshot(
    redis_server: EmbeddedRedis, exporters: Callable[..., MetricsExporter]
) -> None:
    def broken_factory() -> redis.Redis:
        raise RuntimeError("no client for you")

    def broken_snapshot() -> Mapping[str, Any]:
        raise OSError("no /proc")

    exporter = exporters(broken_snapshot, broken_factory, interval_s=0.02)
    assert exporter.push_once() is False
    exporter.start()
    assert eventually(lambda: exporter.failures >= 3)
    assert exporter.alive
    healthy = exporters(broken_snapshot, quick_client(redis_server.url))
    assert healthy.push_once() is False and healthy.failures == 1  # a snapshot that raises
