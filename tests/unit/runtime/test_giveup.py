"""Giving up: a job past AIOS_JOB_TIMEOUT_S is dead-lettered ``timeout`` at once, /live
answers 503, every other packet held goes back to the input in order, and nothing the stuck
worker does afterwards reaches Redis. (The process exit is checked in tests/system.)"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import redis

from aios_instance import Block, OnDataResult, keys
from aios_instance.embedded import EmbeddedRedis
from aios_instance.packet import decode_packet, make_packet
from tests.support import eventually
from tests.unit.control.support import PassThrough, control_settings


class Hangs(PassThrough):
    """on_data never returns for a packet whose data says "hang" (until the test lets go)."""

    release = threading.Event()

    def on_data(self, entry: Any) -> Any:
        if json.loads(entry.packet.data).get("hang"):
            assert self.release.wait(30)
        return True, OnDataResult(output={"done": True})


def test_a_hung_job_is_dead_lettered_timeout_and_the_rest_handed_back(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    Hangs.release.clear()
    s = control_settings(redis_server, job_timeout_s=0.3, claim_batch=8)
    inputs = keys.inputs(s.block_id)
    packets = [make_packet({"hang": i == 1}, session_id="s", seq_no=i) for i in range(4)]
    redis_client.lpush(inputs, *[p.SerializeToString() for p in packets])
    runtime = Block(Hangs, s).start()
    try:
        eventually(lambda: runtime.gave_up, what="the instance to give up")
        live = httpx.get(f"http://127.0.0.1:{s.mgmt_port}/live", timeout=5)
        assert live.status_code == 503
        assert "AIOS_JOB_TIMEOUT_S=0.3s" in live.json()["message"]
        dead = [json.loads(r) for r in redis_client.lrange(keys.dead_letters(s.block_id), 0, -1)]
        assert [(d["outcome"], d["stage"], d["seq_no"]) for d in dead] == [
            ("timeout", "on_data", 1)
        ]
        assert "did not return within" in dead[0]["reason"]
        # The others go back in their order, ready for the next instance; nothing was output.
        back = [decode_packet(r).seq_no for r in redis_client.lrange(inputs, 0, -1)[::-1]]
        assert back == [0, 2, 3]
        assert redis_client.llen(keys.processing(s.block_id, s.instance_id)) == 0
        assert redis_client.exists(keys.lease(s.block_id, s.instance_id)) == 0
        sample = runtime.metrics.registry.get_sample_value
        assert sample("aios_job_timeouts_total", {"phase": "on_data"}) == 1
        assert sample("aios_dead_lettered_total", {"ingress": "queue", "reason": "timeout"}) == 1
    finally:
        Hangs.release.set()  # the stuck call returns: the worker must not touch Redis again
    assert runtime.wait(10)
    assert redis_client.llen(s.default_output) == 0
    assert redis_client.llen(inputs) == 3
    runtime.stop()


def test_a_slow_job_within_the_timeout_is_left_alone(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    Hangs.release.clear()
    s = control_settings(redis_server, job_timeout_s=5.0)
    runtime = Block(Hangs, s).start()
    try:
        redis_client.lpush(keys.inputs(s.block_id), make_packet({"hang": True}).SerializeToString())
        eventually(lambda: runtime.pipeline.running.call is not None, what="the call to begin")
        Hangs.release.set()
        eventually(lambda: redis_client.llen(s.default_output) == 1, what="the output")
        assert not runtime.gave_up and runtime.live_problem == ""
    finally:
        Hangs.release.set()
        runtime.stop()
        assert runtime.wait(10)


def test_a_stop_past_the_drain_deadline_hands_the_stuck_packet_back(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    Hangs.release.clear()
    s = control_settings(redis_server, job_timeout_s=0, drain_timeout_s=0.3)
    inputs = keys.inputs(s.block_id)
    runtime = Block(Hangs, s).start()
    try:
        redis_client.lpush(inputs, make_packet({"hang": True}, seq_no=7).SerializeToString())
        eventually(lambda: runtime.pipeline.running.call is not None, what="the call to begin")
        runtime.stop()
        eventually(lambda: runtime.gave_up, what="the stop to give up", timeout_s=10)
        assert [decode_packet(r).seq_no for r in redis_client.lrange(inputs, 0, -1)] == [7]
        assert redis_client.llen(keys.dead_letters(s.block_id)) == 0  # not its fault
        with httpx.Client() as client:  # the services were closed: nothing answers
            eventually(lambda: _refused(client, f"http://127.0.0.1:{s.mgmt_port}/live"))
    finally:
        Hangs.release.set()
    assert runtime.wait(10)
    assert redis_client.llen(s.default_output) == 0


def _refused(client: httpx.Client, url: str) -> bool:
    try:
        client.get(url, timeout=1)
    except httpx.TransportError:
        return True
    return False
