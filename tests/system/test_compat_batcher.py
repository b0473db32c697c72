"""A block written the spec's way with a TimeBasedBatcher and no hook, served by
``aios-instance run`` in a subprocess: a lone packet comes out about T after it went in."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from aios_instance import keys
from aios_instance.embedded import EmbeddedRedis
from aios_instance.packet import decode_packet, make_packet
from tests.support import ROOT, eventually
from tests.system.test_runtime_e2e import Procs

TIMED_BLOCK = f"{ROOT / 'tests' / 'compat' / 'blocks.py'}:TimedBlock"
T_S = 0.5  # TimedBlock's TimeBasedBatcher(N=4, T=0.5)


def test_a_lone_packet_comes_out_about_T_later_with_no_hook(
    redis_factory: Callable[[], EmbeddedRedis],
    tmp_path: Path,
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    server = redis_factory()
    client = redis.Redis.from_url(server.url, protocol=2)
    procs = Procs(tmp_path, spawned)
    procs.run("run", TIMED_BLOCK, "--redis", server.url, "--block-id", "timed")

    def send(value: float) -> None:
        packet = make_packet({"value": value}, session_id="s", ts=time.time())
        client.lpush(keys.inputs("timed"), packet.SerializeToString())

    send(0.9)  # the first one also waits for the block to start serving
    eventually(lambda: client.llen(keys.DEFAULT_OUTPUT) == 1, 30, "the first flush")
    send(0.1)
    sent = time.monotonic()
    eventually(lambda: client.llen(keys.DEFAULT_OUTPUT) == 2, 10, "the second flush")
    elapsed = time.monotonic() - sent
    assert T_S * 0.9 <= elapsed < T_S + 1.5, elapsed
    outputs = [json.loads(decode_packet(raw).data) for raw in client.lrange("OUTPUT", 0, -1)]
    assert outputs[::-1] == [
        {"batch": [{"value": 0.9, "passed": True}]},
        {"batch": [{"value": 0.1, "passed": False}]},
    ]
    client.close()
