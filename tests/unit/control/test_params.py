"""The PARAMETER_UPDATES listener, against a real runtime on a private redis-server per test
(the block: ``ControlBlock``, which records its on_update calls)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis

from aios_instance import Block, keys
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.runtime.block import Runtime
from aios_instance.runtime.deadletter import record_packets
from aios_instance.settings import Settings
from tests.support import eventually
from tests.unit.control.support import ControlBlock

QUEUE = keys.PARAMETER_UPDATES


@pytest.fixture
def server(redis_factory: Callable[[], EmbeddedRedis]) -> EmbeddedRedis:
    """A private redis-server: PARAMETER_UPDATES is one list per Redis, not per block."""
    return redis_factory()


@pytest.fixture
def client(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url, protocol=2)
    yield c
    c.close()


@contextmanager
def running(server: EmbeddedRedis, *, http: bool = False) -> Iterator[Runtime]:
    s = Settings(
        block_id="params",
        redis_url_override=server.url,
        mgmt_port=free_port() if http else 0,
        metrics_port=0,
        control_bind="127.0.0.1",
        lease_ttl_s=5.0,
        idle_wait_s=0.2,
    )
    runtime = Block(ControlBlock, s).start()
    try:
        eventually(listening, what="the PARAMETER_UPDATES listener")
        yield runtime
    finally:
        runtime.stop()
        assert runtime.wait(10)


def listening() -> bool:
    """Whether a PARAMETER_UPDATES listener thread runs (each test stops its own)."""
    return any(t.name == "aios-parameters" for t in threading.enumerate())


def calls(runtime: Runtime) -> list[dict[str, Any]]:
    block = runtime.block
    assert isinstance(block, ControlBlock)
    with block.lock:
        return list(block.calls)


def test_list_update_reaches_on_update_without_http(
    server: EmbeddedRedis, client: redis.Redis
) -> None:
    with running(server) as runtime:
        assert runtime.control_port is None  # MGMT_PORT=0: no HTTP, the listener still runs
        client.lpush(QUEUE, json.dumps({"threshold": 0.8}))
        eventually(lambda: runtime.context.block_init_parameters.get("threshold") == 0.8)
        assert calls(runtime) == [{"threshold": 0.8}]
        assert runtime.block.threshold == 0.8
        assert client.llen(QUEUE) == 0


def test_http_and_list_updates_take_the_same_path(
    server: EmbeddedRedis, client: redis.Redis
) -> None:
    with running(server, http=True) as runtime:
        base = f"http://127.0.0.1:{runtime.control_port}"
        r = httpx.post(base + "/setParameters", json={"threshold": 0.6, "via": "http"}, timeout=10)
        assert r.json() == {
            "success": True,
            "updated_parameters": {"threshold": 0.6, "via": "http"},
        }
        client.lpush(QUEUE, json.dumps({"threshold": 0.7, "via": "redis"}))
        eventually(lambda: len(calls(runtime)) == 2, what="the list update")
        assert calls(runtime) == [
            {"threshold": 0.6, "via": "http"},
            {"threshold": 0.7, "via": "redis"},
        ]
        assert runtime.context.block_init_parameters == {"threshold": 0.7, "via": "redis"}


def test_updates_apply_oldest_first(server: EmbeddedRedis, client: redis.Redis) -> None:
    with running(server) as runtime:
        client.lpush(QUEUE, *(json.dumps({"threshold": t}) for t in (0.1, 0.2, 0.3)))
        eventually(lambda: len(calls(runtime)) == 3, what="three updates")
        assert [c["threshold"] for c in calls(runtime)] == [0.1, 0.2, 0.3]
        assert runtime.context.block_init_parameters == {"threshold": 0.3}


def test_refused_and_raising_updates_change_nothing(
    server: EmbeddedRedis, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aios_instance")
    with running(server) as runtime:
        client.lpush(QUEUE, json.dumps({"threshold": 0.4}))
        client.lpush(QUEUE, json.dumps({"threshold": "high", "other": 1}))
        client.lpush(QUEUE, json.dumps({"explode": True}))
        client.lpush(QUEUE, json.dumps({"last": True}))
        eventually(lambda: len(calls(runtime)) == 4, what="four updates")
        assert runtime.context.block_init_parameters == {"threshold": 0.4, "last": True}
        assert runtime.block.threshold == 0.4
    messages = [r.getMessage() for r in caplog.records]
    assert any("refused by on_update: threshold must be a number" in m for m in messages)
    assert any("on_update raised" in m for m in messages)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got an array"),
        (b'"threshold"', "must be a JSON object, got a string"),
    ],
)
def test_bad_items_are_dead_lettered_and_the_listener_goes_on(
    server: EmbeddedRedis, client: redis.Redis, raw: bytes, reason: str
) -> None:
    with running(server) as runtime:
        client.lpush(QUEUE, raw)
        client.lpush(QUEUE, json.dumps({"threshold": 0.9}))
        eventually(lambda: runtime.context.block_init_parameters.get("threshold") == 0.9)
        dead = client.lrange(keys.dead_letters("params"), 0, -1)
        assert len(dead) == 1
        record = json.loads(dead[0])
        assert record["outcome"] == "bad_input" and record["stage"] == "parameters"
        assert reason in record["reason"]
        assert (
            record["block_id"] == "params" and record["instance_id"] == runtime.settings.instance_id
        )
        assert record_packets(record) == [raw]
        assert calls(runtime) == [{"threshold": 0.9}]


def test_listener_survives_a_redis_restart(
    server: EmbeddedRedis, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aios_instance.control.params")
    with running(server) as runtime:
        server.stop()
        eventually(lambda: "Redis unavailable" in caplog.text, what="the listener to notice")
        server.start()
        client.lpush(QUEUE, json.dumps({"threshold": 0.35}))
        eventually(
            lambda: runtime.context.block_init_parameters.get("threshold") == 0.35,
            timeout_s=15,
            what="the update after the restart",
        )


def test_an_accepted_update_with_a_non_json_value_is_dead_lettered(
    server: EmbeddedRedis, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aios_instance")
    raw = json.dumps({"opaque": "dict", "threshold": 0.1}).encode()
    with running(server) as runtime:
        client.lpush(QUEUE, raw)
        client.lpush(QUEUE, json.dumps({"threshold": 0.9}))
        eventually(lambda: runtime.context.block_init_parameters.get("threshold") == 0.9)
        assert runtime.context.block_init_parameters == {"threshold": 0.9}  # nothing merged
        dead = client.lrange(keys.dead_letters("params"), 0, -1)
        assert len(dead) == 1
        record = json.loads(dead[0])
        assert (record["outcome"], record["stage"]) == ("user_error", "parameters")
        assert record["reason"].startswith("on_update returned a value that is not JSON")
        assert record_packets(record) == [raw]
    assert "not JSON" in caplog.text and "dead-lettered" in caplog.text
