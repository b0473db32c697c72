"""Redis sinks against real redis-servers: pipelined pushes, rejections, an unreachable
server, and the URL of a destination's server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.errors import TransportError
from aios_instance.routing import Destination
from aios_instance.transport.redis import RedisSink, connect, redis_url_of


def _dest(server: EmbeddedRedis, queue: str) -> Destination:
    return Destination("redis", "127.0.0.1", server.port, queue, "")


def test_sink_pushes_and_reports_rejections(
    redis_factory: Callable[[], EmbeddedRedis],
) -> None:
    downstream = redis_factory()
    client = connect(downstream.url)
    client.set("STRING", "x")
    sink = RedisSink(connect(downstream.url))
    good, bad = _dest(downstream, "LIST"), _dest(downstream, "STRING")
    rejected = sink.push({good: [b"a", b"b"], bad: [b"c"]})
    assert list(rejected) == [bad]
    assert rejected[bad].startswith("WRONGTYPE")
    assert client.lrange("LIST", 0, -1) == [b"b", b"a"]
    assert sink.push({good: []}) == {}
    sink.close()
    client.close()


def test_unreachable_server_raises_transport_error() -> None:
    port = free_port()
    sink = RedisSink(connect(f"redis://127.0.0.1:{port}/0"))
    with pytest.raises(TransportError):
        sink.push({Destination("redis", "127.0.0.1", port, "L", ""): [b"x"]})


def test_ipv6_destinations_get_a_bracketed_url() -> None:
    dest = Destination("redis", "::1", 6390, "Q", "b", db=2, password="p@ss/word")
    assert redis_url_of(dest) == "redis://:p%40ss%2Fword@[::1]:6390/2"
    kwargs = connect(redis_url_of(dest)).connection_pool.connection_kwargs
    got = (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"])
    assert got == ("::1", 6390, 2, "p@ss/word")
