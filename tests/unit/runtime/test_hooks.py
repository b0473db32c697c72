"""Metrics and logging as hooks around the worker: every event names its batch.

The latency test is the one the restructuring owes: with the next batch claimed ahead,
``committed`` for batch k arrives after ``processed`` for batch k+1, so a hook that keeps
"the last batch processed" measures batch k's end-to-end latency from batch k+1's packets.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from aios_instance import AIOSMetrics, OnDataResult, PreProcessResult, keys
from aios_instance.embedded import EmbeddedRedis
from aios_instance.packet import make_packet
from aios_instance.routing import Router, destination_from_url
from aios_instance.runtime.hooks import MetricsHooks
from aios_instance.runtime.instruments import RuntimeMetrics
from aios_instance.runtime.pipeline import Pipeline
from aios_instance.runtime.worker import Worker
from aios_instance.transport.memory import MemorySink, MemorySource
from aios_instance.transport.redis import RedisSource, connect
from tests.support import drain_until_idle

BLOCK = "hk"


class Echo:
    def on_preprocess(self, packet: Any) -> Any:
        return True, PreProcessResult(packet=packet, extra_data=json.loads(packet.data))

    def on_data(self, entry: Any) -> Any:
        if entry.extra_data.get("fail"):
            return False, "asked to fail"
        return True, OnDataResult(output=entry.extra_data)


def _worker(source: Any, metrics: AIOSMetrics, url: str = "redis://127.0.0.1:6390/0") -> Worker:
    default = destination_from_url(url, "OUT")
    pipeline = Pipeline(Echo(), Router(BLOCK, (default,)))
    hooks = MetricsHooks(RuntimeMetrics(metrics))
    sink = MemorySink()
    return Worker(
        pipeline,
        source,
        lambda dest: sink,
        block_id=BLOCK,
        instance_id="i1",
        idle_wait_s=0.0,
        hooks=hooks,
    )


def _sample(metrics: AIOSMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_end_to_end_latency_is_measured_from_the_batch_it_commits(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    """Batch 1 (the first claim, 8 packets) was produced 1000 s ago, batch 2 just now. The
    Redis source confirms batch 1's commit only after batch 2 ran (it claims ahead): the
    histogram must still hold a sample of about 1000 s, for batch 1."""
    metrics = AIOSMetrics(block_id=BLOCK, instance_id="i1")
    now = time.time()
    for i in range(16):
        ts = now - 1000.0 if i < 8 else now
        packet = make_packet({"v": i}, session_id="s", seq_no=i, ts=ts)
        redis_client.lpush(keys.inputs(BLOCK), packet.SerializeToString())
    source = RedisSource(connect(redis_server.url), BLOCK, "i1")
    source.start()
    try:
        worker = _worker(source, metrics, redis_server.url)
        assert drain_until_idle(worker) == 16
        worker.stop()
        worker.shutdown(1.0)
    finally:
        source.close()
        source.client.close()
    assert redis_client.llen("OUT") == 16
    total = _sample(metrics, "aios_end_to_end_seconds_sum")
    assert total >= 1000.0, f"batch 1's latency was measured from another batch ({total:.1f}s)"
    assert _sample(metrics, "aios_end_to_end_seconds_count") == 2  # one sample per batch


def test_a_commit_of_dead_letters_only_records_no_push_time() -> None:
    """A batch whose every packet failed pushes nothing: no zero-second push sample."""
    metrics = AIOSMetrics(block_id=BLOCK, instance_id="i1")
    source = MemorySource(BLOCK)
    for i in range(4):
        source.put(make_packet({"fail": True}, session_id="s", seq_no=i).SerializeToString())
    worker = _worker(source, metrics)
    assert drain_until_idle(worker) == 4
    assert len(source.dead) == 4
    assert _sample(metrics, "aios_dead_lettered_total", ingress="queue", reason="user_error") == 4
    assert _sample(metrics, "aios_phase_seconds_count", phase="push") == 0


def test_a_batch_knows_its_redeliveries() -> None:
    from aios_instance.runtime.hooks import Batch
    from aios_instance.transport.base import Claim

    fresh = Batch(1, (Claim(b"a", 1), Claim(b"b", 1)))
    assert (fresh.redeliveries, fresh.attempt_of(b"a")) == (0, 1)
    again = Batch(2, (Claim(b"c", 3),))
    assert (again.redeliveries, again.attempt_of(b"c"), again.attempt_of(b"x")) == (1, 3, 1)
