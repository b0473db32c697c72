"""Hung user code: a job that never returns is dead-lettered ``timeout`` and its instance
exits (to be restarted, as an orchestrator would) after handing back everything else; a
SIGTERM finishes within AIOS_DRAIN_TIMEOUT_S even when user code hangs."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from aios_instance import keys
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.packet import decode_packet, make_packet
from aios_instance.runtime.watchdog import EXIT_JOB_TIMEOUT
from tests.support import eventually
from tests.system.test_faults import Procs, _client, _seqs

HANGING_BLOCK = '''
import json, threading
from aios_instance import OnDataResult, PreProcessResult

class Hanging:
    """Echoes data; ``{"hang": true}`` never returns."""

    def __init__(self, context):
        self.context = context

    def on_preprocess(self, packet):
        return True, PreProcessResult(packet=packet, extra_data=json.loads(packet.data))

    def on_data(self, entry):
        if entry.extra_data.get("hang"):
            threading.Event().wait()
        return True, OnDataResult(output=entry.extra_data)
'''


def _hanging_block(tmp_path: Path) -> str:
    path = tmp_path / "hanging_block.py"
    path.write_text(HANGING_BLOCK)
    return f"{path}:Hanging"


def _send(client: object, block_id: str, n: int, hang_at: set[int]) -> None:
    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    for i in range(n):
        packet = make_packet({"i": i, "hang": i in hang_at}, session_id="s", seq_no=i)
        pipe.lpush(keys.inputs(block_id), packet.SerializeToString())
    pipe.execute()


@pytest.mark.slow
def test_a_hung_job_is_dead_lettered_and_every_other_packet_is_output(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs, tmp_path: Path
) -> None:
    server = redis_factory()
    client = _client(server.url)
    n, hang = 300, 137
    spec = _hanging_block(tmp_path)
    _send(client, "h", n, {hang})
    env = {"AIOS_JOB_TIMEOUT_S": "1", "AIOS_LEASE_TTL_S": "1"}
    started = 0

    ids: dict[subprocess.Popen[bytes], bytes] = {}

    def start() -> subprocess.Popen[bytes]:
        nonlocal started
        started += 1
        proc = procs.block(spec, server.url, "h", INSTANCE_ID=f"i{started}", **env)
        ids[proc] = f"i{started}".encode()
        return proc

    instances = [start(), start()]
    exits: list[int] = []
    deadline = time.monotonic() + 60

    def done() -> bool:
        outputs, dead = len(set(_seqs(client, "OUTPUT"))), client.llen(keys.dead_letters("h"))
        return outputs == n - 1 and dead == 1 and bool(exits)

    while not done():
        assert time.monotonic() < deadline, "not every packet was output or dead-lettered"
        for k, proc in enumerate(instances):
            code = proc.poll()
            if code is not None:  # an orchestrator restarts an instance that exits
                exits.append(code)
                instances[k] = start()
        time.sleep(0.05)
    assert exits == [EXIT_JOB_TIMEOUT]  # quarantined at once: no second instance stalls
    dead = [json.loads(r) for r in client.lrange(keys.dead_letters("h"), 0, -1)]
    assert [(d["outcome"], d["seq_no"]) for d in dead] == [("timeout", hang)]
    outputs = _seqs(client, "OUTPUT")
    assert sorted(set(outputs)) == [i for i in range(n) if i != hang]
    live = {ids[proc] for proc in instances}
    # Stopped once serving (a signal while Python is still starting would just kill it).
    eventually(lambda: client.smembers(keys.instances("h")) >= live, what="both to serve")
    for proc in instances:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert client.llen(keys.inputs("h")) == 0
    client.close()


@pytest.mark.slow
def test_sigterm_with_user_code_hung_exits_within_the_drain_timeout(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs, tmp_path: Path
) -> None:
    server = redis_factory()
    client = _client(server.url)
    env = {"AIOS_JOB_TIMEOUT_S": "0", "AIOS_DRAIN_TIMEOUT_S": "1", "INSTANCE_ID": "stuck"}
    block = procs.block(_hanging_block(tmp_path), server.url, "t", **env)
    _send(client, "t", 1, {0})
    eventually(lambda: client.llen(keys.processing("t", "stuck")) == 1, what="the hung job")
    _send(client, "t", 5, set())  # waiting behind it
    t0 = time.monotonic()
    block.send_signal(signal.SIGTERM)
    assert block.wait(15) == 0
    assert time.monotonic() - t0 < 1 + 2 + 2  # drain timeout + closing grace + margin
    waiting = [decode_packet(r) for r in client.lrange(keys.inputs("t"), 0, -1)[::-1]]
    assert len(waiting) == 6 and [p.seq_no for p in waiting].count(0) == 2
    assert json.loads(waiting[0].data)["hang"] is True  # handed back to the front
    assert client.exists(keys.processing("t", "stuck")) == 0
    assert client.exists(keys.lease("t", "stuck")) == 0
    assert client.llen(keys.dead_letters("t")) == 0
    client.close()


@pytest.mark.slow
def test_a_hung_infer_is_answered_504_and_then_the_instance_gives_up(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs, tmp_path: Path
) -> None:
    """POST /infer into user code that never returns: the caller gets 504 at
    AIOS_INFER_TIMEOUT_S; at AIOS_JOB_TIMEOUT_S the watchdog gives the instance up (the
    queue's packets handed back, exit 3), as for a hung queue job."""
    server = redis_factory()
    client = _client(server.url)
    port = free_port()
    env = {"AIOS_JOB_TIMEOUT_S": "2", "AIOS_INFER_TIMEOUT_S": "0.5", "MGMT_PORT": str(port)}
    block = procs.block(_hanging_block(tmp_path), server.url, "web", INSTANCE_ID="web", **env)
    base = f"http://127.0.0.1:{port}"
    eventually(lambda: _ready(base), what="the block to serve")
    answered = httpx.post(base + "/infer", json={"data": {"hang": True}}, timeout=10)
    assert answered.status_code == 504
    _send(client, "web", 3, set())  # queue packets waiting behind the hung call
    assert block.wait(20) == EXIT_JOB_TIMEOUT
    records = [json.loads(r) for r in client.lrange(keys.dead_letters("web"), 0, -1)]
    assert {r["outcome"] for r in records} == {"timeout"}
    assert all(json.loads(decode_packet_b64(r["packet"]).data) == {"hang": True} for r in records)
    assert client.llen(keys.inputs("web")) + client.llen(keys.processing("web", "web")) == 3
    client.close()


def _ready(base: str) -> bool:
    try:
        return httpx.get(base + "/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def decode_packet_b64(text: str) -> Any:
    return decode_packet(base64.b64decode(text))
