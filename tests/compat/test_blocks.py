"""The blocks of tests/compat/blocks.py, each through BlockTester and the real runtime."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from aios_instance import (
    AIOSMetrics,
    BlockEvents,
    BlockTester,
    SessionsManager,
    TestContext,
    TimeBasedBatcher,
    keys,
)
from aios_instance.blockdata import BlockData
from aios_instance.embedded import EmbeddedRedis
from aios_instance.packet import decode_packet, make_packet
from tests.compat.blocks import CallbackTimedBlock, MuxedBlock, OldStyleBlock, TimedBlock
from tests.support import FakeClock, eventually
from tests.unit.control.support import running

Factory = Callable[[], EmbeddedRedis]


def _block_id() -> str:
    return f"compat-{uuid.uuid4().hex[:8]}"


def _send(client: redis.Redis, block_id: str, data: Any, session: str = "s", seq: int = 0) -> None:
    packet = make_packet(data, session_id=session, seq_no=seq, ts=1.0)
    client.lpush(keys.inputs(block_id), packet.SerializeToString())


def _outputs(client: redis.Redis, block_id: str, n: int) -> list[Any]:
    out = f"{block_id}_out"
    eventually(lambda: client.llen(out) >= n, what=f"{n} outputs on {out}")
    return [json.loads(decode_packet(raw).data) for raw in client.lrange(out, 0, -1)[::-1]]


# -- the old calls: sessions, labelnames=, events, sidecars, mgmt -------------------------------


def test_old_style_block_through_block_tester() -> None:
    tester = BlockTester(OldStyleBlock)
    assert tester.run({"value": 0.9}) == [{"value": 0.9, "passed": True, "count": 1}]
    assert tester.run({"value": 0.1}) == [{"value": 0.1, "passed": False, "count": 2}]
    metrics = tester.context.metrics
    assert metrics.sample("values_total", {"passed": "True"}) == 1
    assert [e["event_name"] for e in tester.context.events.recorded] == ["value_seen"] * 2
    assert tester.block.management("forget", {"sessions": ["test-session"]}) == {"removed": 1}


def test_old_style_block_in_the_runtime_with_sidecars_from_block_init_data(
    redis_server: EmbeddedRedis, redis_client: redis.Redis, redis_factory: Factory
) -> None:
    sidecar = redis_factory()
    side_cars = {"saver": {"external": True, "external_redis_url": sidecar.url}}
    data = BlockData({"blockInitData": {"side_cars": side_cars}, "parameters": {"threshold": 1}})
    block_id = _block_id()
    with running(OldStyleBlock, redis_server, data, block_id=block_id) as (runtime, base):
        _send(redis_client, block_id, {"value": 2}, session="a", seq=1)
        assert _outputs(redis_client, block_id, 1) == [{"value": 2, "passed": True, "count": 1}]
        with redis.Redis.from_url(sidecar.url) as sidecar_client:
            inputs = sidecar_client.lrange("INPUTS", 0, -1)
        assert [json.loads(decode_packet(raw).data)["value"] for raw in inputs] == [2]
        assert decode_packet(inputs[0]).session_id == "a"
        r = httpx.post(base + "/mgmt", json={"mgmt_action": "status"}, timeout=5)
        assert r.json() == {
            "success": True,
            "data": {"message": "Unknown action: status", "data": {}},
        }
        r = httpx.post(
            base + "/mgmt", json={"mgmt_action": "forget", "mgmt_data": {"sessions": ["a"]}}
        )
        assert r.json() == {"success": True, "data": {"removed": 1}}
        assert runtime.context.side_cars.names == ["saver"]


# -- a reference-style Muxer subclass -----------------------------------------------------------


def test_reference_muxer_block_through_block_tester() -> None:
    tester = BlockTester(MuxedBlock)
    assert tester.run({"k": 1}) == [] and tester.run({"k": 2}) == []
    outputs = tester.run({"k": 3})
    inputs = [{"k": 1}, {"k": 2}, {"k": 3}]
    assert [o["input_summary"] for o in outputs] == [{"inputs": inputs}] * 3
    assert [o["metadata"] for o in outputs] == [{"input": i} for i in inputs]
    assert tester.failures == ()


def test_reference_muxer_block_in_the_runtime(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    block_id = _block_id()
    with running(MuxedBlock, redis_server, block_id=block_id):
        for k in range(3):
            _send(redis_client, block_id, {"k": k}, session="m", seq=7)
        outputs = _outputs(redis_client, block_id, 3)
    inputs = [{"k": k} for k in range(3)]
    assert [o["input_summary"] for o in outputs] == [{"inputs": inputs}] * 3
    assert redis_client.llen(keys.dead_letters(block_id)) == 0


# -- TimeBasedBatcher without a hook, and with flush_callback= ----------------------------------


def test_timed_blocks_through_block_tester() -> None:
    for block, key in ((TimedBlock, "batch"), (CallbackTimedBlock, "flushed")):
        tester = BlockTester(block)
        clock = FakeClock()
        old = tester.block.batcher
        tester.block.batcher = TimeBasedBatcher(4, 0.5, old.flush_callback, clock=clock)
        assert tester.run({"value": 0.9}) == []
        assert tester.tick(0.4) == []
        assert tester.tick(0.5) == [{key: [{"value": 0.9, "passed": True}]}]
        full = [tester.run({"value": v}) for v in (0.1, 0.2, 0.3, 0.4)]
        values = [{"value": v, "passed": False} for v in (0.1, 0.2, 0.3, 0.4)]
        assert full == [[], [], [], [{"batch": values}]]  # a full batch: on_data's own output


def test_a_lone_packet_in_a_timed_block_comes_out_in_the_runtime(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    for block, key in ((TimedBlock, "batch"), (CallbackTimedBlock, "flushed")):
        block_id = _block_id()
        with running(block, redis_server, block_id=block_id):
            _send(redis_client, block_id, {"value": 0.7})
            assert _outputs(redis_client, block_id, 1) == [{key: [{"value": 0.7, "passed": True}]}]


def test_the_specs_custom_context_with_a_standalone_block_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BLOCK_ID", "compat-env")
    monkeypatch.delenv("BLOCK_EVENTS_REDIS_URL", raising=False)
    context = TestContext()
    context.block_init_parameters = {"threshold": 0.75}
    context.metrics = AIOSMetrics()
    context.sessions = SessionsManager()
    context.events = BlockEvents()
    tester = BlockTester.init_with_context(OldStyleBlock, context)
    assert tester.run({"value": 0.6}) == [{"value": 0.6, "passed": False, "count": 1}]
    [event] = context.events.recorded
    assert event["block_id"] == "compat-env" and event["event_data"] == {"value": 0.6}
