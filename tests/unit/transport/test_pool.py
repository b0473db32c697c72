"""One sink per endpoint, reused: the pool never builds a connection per packet."""

from __future__ import annotations

import threading

from aios_instance.routing import Destination
from aios_instance.transport.grpc import GrpcSink
from aios_instance.transport.pool import SinkPool
from aios_instance.transport.redis import RedisSink


def test_one_sink_per_endpoint_whatever_the_list() -> None:
    pool = SinkPool()
    a = Destination("redis", "127.0.0.1", 6390, "A", "x")
    b = Destination("redis", "127.0.0.1", 6390, "B", "y")
    other_db = Destination("redis", "127.0.0.1", 6390, "A", "x", db=1)
    grpc = Destination("grpc", "127.0.0.1:50051", 0, "n_inputs", "n")
    try:
        assert pool(a) is pool(b)
        assert pool(a) is not pool(other_db)
        assert isinstance(pool(a), RedisSink)
        assert isinstance(pool(grpc), GrpcSink)
        assert pool(grpc) is pool(Destination("grpc", "127.0.0.1:50051", 0, "m_inputs", "m"))
    finally:
        pool.close()


def test_concurrent_first_use_builds_one_sink() -> None:
    pool = SinkPool()
    dest = Destination("redis", "127.0.0.1", 6391, "A", "x")
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(pool(dest))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5.0)
    pool.close()
    assert len(got) == 8 and all(sink is got[0] for sink in got)


def test_the_pool_is_bounded_and_closes_idle_sinks_first() -> None:
    from tests.support import FakeClock

    clock = FakeClock()
    pool = SinkPool(max_sinks=2, idle_s=60.0, clock=clock)
    a, b, c = (Destination("redis", "127.0.0.1", 6390 + i, "Q", "x") for i in range(3))
    first = pool(a)
    pool(b)
    clock.advance(1.0)
    pool(a)  # a used again: b is now the least recently used
    pool(c)  # over the bound: b goes
    assert len(pool) == 2 and pool(a) is first
    clock.advance(61.0)
    pool(b)  # a and c idle past 60 s: both closed, b made again
    assert len(pool) == 1
    pool.close()
