"""Fault tests: block processes killed, downstream Redis restarted, garbage inputs, SIGTERM.

Each runs ``aios-instance run`` subprocesses against private redis-servers and asserts exact
counts: every packet's output arrives (duplicates only within the bounded in-flight window),
every bad input is a dead letter with a reason, nothing is lost on a drain.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from aios_instance import keys
from aios_instance.embedded import EmbeddedRedis, find_redis_server, free_port
from aios_instance.packet import decode_packet, make_packet
from tests.support import ROOT, SIMPLE_BLOCK, eventually

CLI = str(Path(sys.executable).with_name("aios-instance"))
_CLEARED = ("AIOS_", "REDIS_", "BLOCK", "INSTANCE_ID", "MGMT_PORT", "METRICS_", "CUSTOM_INIT")
CLAIM_BATCH = 32

SLOW_BLOCK = '''
import json, time
from aios_instance import OnDataResult, PreProcessResult

class Slow:
    """Echoes data after a short pause per entry, so a test can act mid-stream."""

    def __init__(self, context):
        self.context = context

    def on_preprocess(self, packet):
        return True, PreProcessResult(packet=packet, extra_data=json.loads(packet.data))

    def on_data(self, entry):
        time.sleep({delay_s})
        return True, OnDataResult(output=entry.extra_data)
'''

CRASHY_BLOCK = '''
import json, os, signal, sys
from aios_instance import OnDataResult, PreProcessResult

class Crashy:
    """Echoes data; ``{{"crash": true}}`` ends the process: {how}."""

    def __init__(self, context):
        self.context = context

    def on_preprocess(self, packet):
        return True, PreProcessResult(packet=packet, extra_data=json.loads(packet.data))

    def on_data(self, entry):
        if entry.extra_data.get("crash"):
            {crash}
        return True, OnDataResult(output=entry.extra_data)
'''
CRASHES = {
    "sigkill": ("a segfault in a native library", "os.kill(os.getpid(), signal.SIGKILL)", -9),
    "sys_exit": ("user code calling sys.exit", "sys.exit(3)", 3),
}


def cli_env(**extra: str) -> dict[str, str]:
    """The environment minus every setting the runtime reads, plus ``extra``; ports off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    defaults = {
        "MGMT_PORT": "0",
        "AIOS_WS_PORT": "0",
        "METRICS_PORT": "0",
        "AIOS_IDLE_WAIT_S": "0.2",
        "AIOS_LOG_LEVEL": "WARNING",
        "AIOS_CLAIM_BATCH": str(CLAIM_BATCH),
    }
    env.update({**defaults, **extra})
    return env


class Procs:
    """Processes of one test (blocks, redis-servers), ended by PID at teardown."""

    def __init__(self, tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
        self.tmp_path = tmp_path
        self.started = started  # the `spawned` fixture ends them

    def block(
        self, spec: str, redis_url: str, block_id: str, **env: str
    ) -> subprocess.Popen[bytes]:
        args = [CLI, "run", spec, "--redis", redis_url, "--block-id", block_id]
        return self._start(args, cli_env(**env), f"block-{block_id}")

    def redis(self, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
        """A redis-server with an fsync-always AOF in ``data_dir``: a restart keeps its data."""
        data_dir.mkdir(exist_ok=True)
        args = [
            find_redis_server(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        proc = self._start(args, None, f"redis-{port}")
        client = redis.Redis(port=port, host="127.0.0.1", protocol=2, socket_timeout=1.0)
        try:
            eventually(lambda: _pings(client), 10, "redis-server to start")
        finally:
            client.close()
        return proc

    def _start(self, args: list[str], env: Any, name: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name}-{len(self.started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        self.started.append(proc)
        return proc


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def _slow_block(tmp_path: Path, delay_s: float) -> str:
    path = tmp_path / "slow_block.py"
    path.write_text(SLOW_BLOCK.replace("{delay_s}", repr(delay_s)))
    return f"{path}:Slow"


def _ptr(port: int, queue: str) -> dict[str, Any]:
    return {"outputs": [{"host": "127.0.0.1", "port": port, "queue_name": queue}]}


def _send_stream(client: redis.Redis, block_id: str, n: int, output_ptr: Any = "") -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        packet = make_packet({"i": i}, session_id="stream", seq_no=i, output_ptr=output_ptr)
        pipe.lpush(keys.inputs(block_id), packet.SerializeToString())
    pipe.execute()


def _seqs(client: redis.Redis, queue: str) -> list[int]:
    return [decode_packet(raw).seq_no for raw in client.lrange(queue, 0, -1)]


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, protocol=2)


@pytest.mark.slow
def test_kill_9_mid_stream_then_another_instance_takes_over(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs, tmp_path: Path
) -> None:
    server, downstream = redis_factory(), redis_factory()
    client, down = _client(server.url), _client(downstream.url)
    n = 5_000
    spec = _slow_block(tmp_path, 0.0005)
    _send_stream(client, "k", n, _ptr(downstream.port, "FINAL"))
    first = procs.block(spec, server.url, "k", INSTANCE_ID="first", AIOS_LEASE_TTL_S="1.0")
    eventually(lambda: down.llen("FINAL") >= 1_000, what="the first instance to get going")
    first.kill()  # SIGKILL: no drain, no hand-back; the lease just stops being renewed
    assert first.wait(10) == -signal.SIGKILL
    in_flight = client.llen(keys.processing("k", "first"))
    assert 0 <= in_flight <= 2 * CLAIM_BATCH  # the batch running and the one claimed ahead
    second = procs.block(spec, server.url, "k", INSTANCE_ID="second", AIOS_LEASE_TTL_S="1.0")
    eventually(lambda: len(set(_seqs(down, "FINAL"))) == n, 45, "every output")
    seqs = _seqs(down, "FINAL")
    duplicates = len(seqs) - n
    assert sorted(set(seqs)) == list(range(n))
    # Only the first instance's claimed-but-unacknowledged packets can be delivered twice.
    assert 0 <= duplicates <= in_flight, (duplicates, in_flight)
    assert client.llen(keys.inputs("k")) == 0
    assert client.exists(keys.processing("k", "first")) == 0
    assert client.llen(keys.dead_letters("k")) == 0
    assert client.smembers(keys.instances("k")) == {b"second"}
    second.send_signal(signal.SIGTERM)
    assert second.wait(15) == 0
    client.close()
    down.close()


@pytest.mark.slow
def test_downstream_redis_restart_mid_stream_loses_nothing(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs, tmp_path: Path
) -> None:
    server = redis_factory()
    port = free_port()
    downstream = procs.redis(port, tmp_path / "downstream")
    client = _client(server.url)
    down = redis.Redis(host="127.0.0.1", port=port, protocol=2)
    n = 5_000
    _send_stream(client, "r", n, _ptr(port, "FINAL"))
    block = procs.block(
        _slow_block(tmp_path, 0.0003), server.url, "r", AIOS_DELIVERY_TIMEOUT_S="60"
    )
    eventually(lambda: down.llen("FINAL") >= 1_000, what="outputs before the restart")
    downstream.send_signal(signal.SIGTERM)  # a clean stop: the AOF keeps what was pushed
    assert downstream.wait(10) == 0
    down.close()
    eventually(lambda: client.llen(keys.inputs("r")) < n - 2_000, what="progress while it is down")
    time.sleep(2.0)  # the outage itself: a few seconds with the endpoint gone
    assert client.llen(keys.dead_letters("r")) == 0
    procs.redis(port, tmp_path / "downstream")
    down = redis.Redis(host="127.0.0.1", port=port, protocol=2)
    eventually(lambda: len(set(_seqs(down, "FINAL"))) == n, 45, "every output after the restart")
    seqs = _seqs(down, "FINAL")
    assert sorted(set(seqs)) == list(range(n))
    # A push whose reply was lost in the stop may be repeated: at most one batch.
    assert 0 <= len(seqs) - n <= CLAIM_BATCH
    assert client.llen(keys.inputs("r")) == 0
    assert client.llen(keys.dead_letters("r")) == 0
    assert all(client.llen(key) == 0 for key in client.keys("aios:r:processing:*"))
    block.send_signal(signal.SIGTERM)
    assert block.wait(15) == 0
    client.close()
    down.close()


def _garbage(rng: random.Random, i: int, unreachable_port: int) -> tuple[str, bytes]:
    """One malformed input of kind ``i % 5`` (its seq_no is ``i`` where it has one)."""
    kind = i % 5
    if kind == 0:
        # 0xFF starts a field of wire type 7, which does not exist: never a valid packet.
        return "bad_input", b"\xff" + rng.randbytes(rng.randint(0, 64))
    if kind == 1:
        packet = make_packet(None, session_id="bad", seq_no=i)
        packet.data = rng.choice(["{not json", "nan?", "[1, 2", "'single'", '{"a": }'])
        return "bad_input", packet.SerializeToString()
    if kind == 2:
        ptr = rng.choice(
            [
                "{broken",
                '{"outputs": "x"}',
                '{"outputs": [{"port": 1}]}',
                '{"outputs": [{"host": "h", "port": 70000, "queue_name": "q"}]}',
                '{"is_graph": true, "graph": {}}',
            ]
        )
        packet = make_packet({"value": 1.0}, session_id="bad", seq_no=i, output_ptr=ptr)
        return "routing_error", packet.SerializeToString()
    if kind == 3:  # valid JSON the block cannot handle: it returns (False, reason)
        packet = make_packet({"value": "high"}, session_id="bad", seq_no=i)
        return "user_error", packet.SerializeToString()
    packet = make_packet(
        {"value": 1.0}, session_id="bad", seq_no=i, output_ptr=_ptr(unreachable_port, "NOWHERE")
    )
    return "delivery_error", packet.SerializeToString()


@pytest.mark.slow
def test_malformed_inputs_are_dead_lettered_and_the_block_keeps_running(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs
) -> None:
    server = redis_factory()
    client = _client(server.url)
    rng = random.Random(20240607)
    unreachable = free_port()
    n_bad = n_good = 1_000
    expected: Counter[str] = Counter()
    bad_packets: set[bytes] = set()
    good = 0
    pipe = client.pipeline(transaction=False)
    for i in range(n_bad + n_good):
        if i % 2:
            kind, raw = _garbage(rng, i // 2, unreachable)
            expected[kind] += 1
            bad_packets.add(raw)
        else:
            raw = make_packet({"value": 0.9}, session_id="good", seq_no=good).SerializeToString()
            good += 1
        pipe.lpush(keys.inputs("m"), raw)
    pipe.execute()
    block = procs.block(SIMPLE_BLOCK, server.url, "m", AIOS_DELIVERY_TIMEOUT_S="1.0")
    eventually(lambda: client.llen(keys.dead_letters("m")) >= n_bad, 45, "every dead letter")
    eventually(lambda: client.llen("OUTPUT") >= n_good, 10, "every good output")
    assert block.poll() is None, "the block died"
    records = [json.loads(r) for r in client.lrange(keys.dead_letters("m"), 0, -1)]
    assert len(records) == n_bad
    assert Counter(r["outcome"] for r in records) == expected
    assert expected == Counter(bad_input=400, routing_error=200, user_error=200, delivery_error=200)
    assert all(r["reason"] and r["block_id"] == "m" for r in records)
    assert {base64.b64decode(r["packet"]) for r in records} == bad_packets
    outputs = [decode_packet(raw) for raw in client.lrange("OUTPUT", 0, -1)]
    assert len(outputs) == n_good
    assert sorted(p.seq_no for p in outputs) == list(range(n_good))
    assert {p.session_id for p in outputs} == {"good"}
    assert all(json.loads(p.data) == {"value": 0.9, "passed": True} for p in outputs)
    assert client.llen(keys.inputs("m")) == 0
    assert all(client.llen(key) == 0 for key in client.keys("aios:m:processing:*"))
    block.send_signal(signal.SIGTERM)
    assert block.wait(15) == 0
    client.close()


@pytest.mark.slow
def test_sigterm_mid_stream_drains_and_exits_0(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs, tmp_path: Path
) -> None:
    server = redis_factory()
    client = _client(server.url)
    n = 3_000
    _send_stream(client, "d", n)
    block = procs.block(_slow_block(tmp_path, 0.001), server.url, "d", INSTANCE_ID="drainer")
    eventually(lambda: client.llen("OUTPUT") >= 500, what="the block to get going")
    t0 = time.monotonic()
    block.send_signal(signal.SIGTERM)
    assert block.wait(15) == 0
    assert time.monotonic() - t0 < 5.0  # one batch (~32 ms) + the claim wait + shutdown
    outputs = _seqs(client, "OUTPUT")
    waiting = [decode_packet(raw).seq_no for raw in client.lrange(keys.inputs("d"), 0, -1)]
    assert len(outputs) + len(waiting) == n
    assert sorted(outputs + waiting) == list(range(n))
    assert 500 <= len(outputs) < n  # stopped mid-stream
    assert client.exists(keys.processing("d", "drainer")) == 0
    assert client.exists(keys.lease("d", "drainer")) == 0
    assert client.smembers(keys.instances("d")) == set()
    assert client.llen(keys.dead_letters("d")) == 0
    client.close()


LOADING_BLOCK = '''
import pathlib, time

class Loading:
    """A block whose constructor takes long (a model loading); it says when it has begun."""

    def __init__(self, context):
        pathlib.Path({marker!r}).write_text("loading")
        time.sleep(60)

    def on_preprocess(self, packet):
        return True, []

    def on_data(self, entry):
        return True, None
'''


@pytest.mark.slow
def test_sigterm_while_the_block_is_constructed_exits_0_at_once(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs, tmp_path: Path
) -> None:
    server = redis_factory()
    client = _client(server.url)
    marker = tmp_path / "loading"
    (tmp_path / "loading_block.py").write_text(LOADING_BLOCK.format(marker=str(marker)))
    _send_stream(client, "l", 10)
    block = procs.block(f"{tmp_path / 'loading_block.py'}:Loading", server.url, "l")
    eventually(marker.exists, 20, "the constructor to begin")
    t0 = time.monotonic()
    block.send_signal(signal.SIGTERM)
    assert block.wait(10) == 0
    assert time.monotonic() - t0 < 5.0  # not after the 60 s load
    assert client.llen(keys.inputs("l")) == 10  # nothing was claimed
    assert client.keys("aios:l:processing:*") == []
    client.close()


@pytest.mark.slow
@pytest.mark.parametrize("crash", sorted(CRASHES))
def test_a_packet_that_kills_the_process_is_dead_lettered_alone(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs, tmp_path: Path, crash: str
) -> None:
    """Restarted like a pod (same INSTANCE_ID) after each crash: the poison packet is
    redelivered alone, so only it reaches max_deliveries; its batch-mates are processed.
    Killed from outside (the next start requeues) or exiting from inside (the exit hands
    the claim back), each crash counts as a delivery."""
    how, statement, returncode = CRASHES[crash]
    server = redis_factory()
    client = _client(server.url)
    (tmp_path / "crashy.py").write_text(CRASHY_BLOCK.format(how=how, crash=statement))
    spec = f"{tmp_path / 'crashy.py'}:Crashy"
    n, poison = 200, 100
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        data = {"i": i, "crash": i == poison}
        pipe.lpush(keys.inputs("p"), make_packet(data, seq_no=i).SerializeToString())
    pipe.execute()
    crashes = 0

    def finished() -> bool:
        return client.llen("OUTPUT") == n - 1 and client.llen(keys.dead_letters("p")) == 1

    while True:
        block = procs.block(spec, server.url, "p", INSTANCE_ID="pod-0", AIOS_MAX_DELIVERIES="2")
        eventually(lambda: block.poll() is not None or finished(), 20, "a crash or the end")  # noqa: B023
        if block.poll() is None:
            break
        assert block.returncode == returncode
        crashes += 1
        assert crashes <= 3, "the poison packet was not isolated"
    assert crashes == 2  # its first delivery (in a batch) and its second (alone)
    [record] = [json.loads(r) for r in client.lrange(keys.dead_letters("p"), 0, -1)]
    assert (record["outcome"], record["attempts"]) == ("max_deliveries", 3)
    assert decode_packet(base64.b64decode(record["packet"])).seq_no == poison
    seqs = _seqs(client, "OUTPUT")
    assert sorted(seqs) == [i for i in range(n) if i != poison]  # each exactly once
    assert client.llen(keys.inputs("p")) == 0
    assert client.llen(keys.processing("p", "pod-0")) == 0
    assert client.hlen(keys.attempts("p")) == 0
    block.send_signal(signal.SIGTERM)
    assert block.wait(15) == 0
    client.close()
