"""Block wiring: a runtime started in-process serves, samples its gauges after each lease
renewal, drains on stop, and a constructor that fails leaves nothing running."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

import pytest
import redis

from aios_instance import Block, keys
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.errors import ConfigError
from aios_instance.packet import decode_packet, make_packet
from aios_instance.runtime.startup import age_s as _age_s
from aios_instance.settings import Settings
from tests.support import eventually
from tests.unit.control.support import PassThrough, control_settings


def test_a_started_block_serves_samples_its_gauges_and_drains_on_stop(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    s = control_settings(redis_server, lease_ttl_s=0.6)
    runtime = Block(PassThrough, s).start()
    try:
        for i in range(5):
            packet = make_packet({"v": i}, session_id="s", seq_no=i)
            redis_client.lpush(keys.inputs(s.block_id), packet.SerializeToString())
        eventually(lambda: redis_client.llen(s.default_output) == 5, what="five outputs")
        outputs = redis_client.lrange(s.default_output, 0, -1)[::-1]
        assert [decode_packet(raw).seq_no for raw in outputs] == list(range(5))
        assert runtime.lease.renewed_at is not None
        sample = runtime.metrics.registry.get_sample_value
        assert sample("aios_packets_in_total", {"ingress": "queue"}) == 5
    finally:
        runtime.stop()
        assert runtime.wait(10)
    assert redis_client.llen(keys.processing(s.block_id, s.instance_id)) == 0
    assert redis_client.exists(keys.lease(s.block_id, s.instance_id)) == 0


class Gated(PassThrough):
    """Holds every job until the test opens the gate."""

    gate = threading.Event()

    def on_data(self, entry: Any) -> Any:
        assert self.gate.wait(10)
        return super().on_data(entry)


def test_the_gauges_are_sampled_after_each_renewal(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    s = control_settings(redis_server, lease_ttl_s=0.6)
    runtime = Block(Gated, s).start()
    sample = runtime.metrics.registry.get_sample_value
    try:
        redis_client.lpush(keys.inputs(s.block_id), make_packet({}).SerializeToString())
        eventually(lambda: sample("aios_in_flight") == 1, what="the job in flight")
        for _ in range(3):  # wait behind it
            packet = make_packet({}, ts=time.time() - 60)
            redis_client.lpush(keys.inputs(s.block_id), packet.SerializeToString())
        eventually(lambda: sample("aios_queue_depth") == 3, what="the depth gauge")
        # Set by the same sampling, a moment later (a read in between sees the older value).
        eventually(lambda: (sample("aios_oldest_age_seconds") or 0) >= 60, what="the age gauge")
    finally:
        Gated.gate.set()
        runtime.stop()
        assert runtime.wait(10)
    assert redis_client.llen(s.default_output) == 1  # the job held: finished by the drain
    assert redis_client.llen(keys.inputs(s.block_id)) == 3  # never claimed: left waiting


class Broken(PassThrough):
    def __init__(self, context: Any) -> None:
        raise RuntimeError("model weights not found")


def test_a_constructor_that_fails_closes_the_control_api_and_says_where(
    redis_server: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    s = control_settings(redis_server)
    with pytest.raises(RuntimeError, match="model weights not found"):
        Block(Broken, s).start()
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    line = Broken.__init__.__code__.co_firstlineno + 1
    assert f"Broken(context) failed at {__file__}:{line} in __init__" in error
    with socket.socket() as sock:  # the port is free again
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", s.mgmt_port))


def test_the_age_of_a_waiting_packet_comes_from_its_ts() -> None:
    produced = make_packet({}, ts=time.time() - 30).SerializeToString()
    assert 29 < _age_s(produced) < 60
    assert _age_s(make_packet({}, ts=0).SerializeToString()) == 0.0  # no ts: unknown
    assert _age_s(b"\xff\xff") == 0.0 and _age_s(None) == 0.0


def test_an_unreachable_redis_says_where_the_url_came_from_and_what_to_do() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = {"AIOS_REDIS_URL": url, "MGMT_PORT": "0", "METRICS_PORT": "0", "BLOCK_ID": "x"}
    env["AIOS_WS_PORT"] = "0"
    env["AIOS_STARTUP_TIMEOUT_S"] = "0"
    with pytest.raises(ConfigError) as caught:
        Block(PassThrough, Settings.from_env(env)).run()
    message = str(caught.value)
    assert f"cannot reach the instance Redis at {url} (from AIOS_REDIS_URL)" in message
    assert "Start redis-server there" in message


class Counting(PassThrough):
    built = 0

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        Counting.built += 1


def test_a_block_started_before_its_redis_waits_then_serves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    s = Settings(
        block_id="early",
        redis_url_override=f"redis://127.0.0.1:{port}/0",
        mgmt_port=0,
        ws_port=0,
        metrics_port=0,
        idle_wait_s=0.2,
        startup_timeout_s=30.0,
        default_output="early_out",
    )
    runtimes: list[Any] = []
    starter = threading.Thread(target=lambda: runtimes.append(Block(Counting, s).start()))
    starter.start()
    eventually(lambda: "waiting up to 30s for the Redis" in caplog.text, what="the wait")
    assert Counting.built == 0  # the block is not built while Redis is away
    with EmbeddedRedis(port) as server:
        starter.join(30)
        [runtime] = runtimes
        client = redis.Redis.from_url(server.url, protocol=2)
        try:
            client.lpush(keys.inputs("early"), make_packet({}).SerializeToString())
            eventually(lambda: client.llen("early_out") == 1, what="the output")
        finally:
            runtime.stop()
            assert runtime.wait(10)
            client.close()
    assert Counting.built == 1
    assert "the instance Redis at" in caplog.text and "answers" in caplog.text


class BadConfig(PassThrough):
    def __init__(self, context: Any) -> None:
        json.loads("not json")  # a library raises: the block's line is what the user needs


def test_a_constructor_error_inside_a_library_names_the_blocks_line_first(
    redis_server: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError):
        Block(BadConfig, control_settings(redis_server)).start()
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    line = BadConfig.__init__.__code__.co_firstlineno + 1
    assert f"BadConfig(context) failed at {__file__}:{line} in __init__ (raised in " in error
    assert "json" in error.split("(raised in ")[1]


class Looping(PassThrough):
    """Counts its on_data calls."""

    calls = 0

    def on_data(self, entry: Any) -> Any:
        Looping.calls += 1
        return super().on_data(entry)


def test_a_packet_routed_back_to_its_own_block_stops_at_the_hop_limit(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    Looping.calls = 0
    s = control_settings(redis_server, max_hops=5)
    own = keys.inputs(s.block_id)
    # Back to its own input, spelt three ways: one push per pass, not three.
    outputs = [
        {"host": host, "port": redis_server.port, "queue_name": own}
        for host in ("127.0.0.1", "localhost", "LOCALHOST.")
    ]
    packet = make_packet({}, session_id="loop", output_ptr=json.dumps({"outputs": outputs}))
    runtime = Block(Looping, s).start()
    try:
        redis_client.lpush(own, packet.SerializeToString())
        eventually(lambda: redis_client.llen(keys.dead_letters(s.block_id)) == 1, what="the stop")
        [record] = [
            json.loads(r) for r in redis_client.lrange(keys.dead_letters(s.block_id), 0, -1)
        ]
        assert (record["outcome"], record["stage"]) == ("routing_loop", "route")
        assert "AIOS_MAX_HOPS=5" in record["reason"]
        assert Looping.calls == 5  # hops 0 to 4 processed; the fifth output is stopped
        assert redis_client.llen(own) == 0
        sample = runtime.metrics.registry.get_sample_value
        assert (
            sample("aios_dead_lettered_total", {"ingress": "queue", "reason": "routing_loop"}) == 1
        )
    finally:
        runtime.stop()
        assert runtime.wait(10)
