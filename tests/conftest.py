"""Shared fixtures: real redis-server processes on free loopback ports (never the system 6379)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator

import pytest
import redis

from aios_instance.embedded import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """One redis-server for the whole session; tests use unique keys or `redis_client`."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A client on the session server, flushed before each test (our own server, never 6379)."""
    client = redis.Redis.from_url(redis_server.url, protocol=2)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def redis_factory() -> Iterator[Callable[[], EmbeddedRedis]]:
    """Start extra, private redis-servers (stopped at teardown) for fault tests."""
    started: list[EmbeddedRedis] = []

    def make() -> EmbeddedRedis:
        server = EmbeddedRedis().start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts (append them): ended by PID at teardown, SIGTERM then SIGKILL."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/system is marked ``system`` (select or skip with ``-m``)."""
    for item in items:
        if "system" in item.path.parts[-2:-1]:
            item.add_marker(pytest.mark.system)
