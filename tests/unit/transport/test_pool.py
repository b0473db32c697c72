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
