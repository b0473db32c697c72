"""End to end: ``aios-instance run`` in a subprocess, fed and read through Redis.

The spec's SimpleBlock served against a test server and against the CLI's embedded Redis,
a two-block graph across two servers, and a dead letter replayed once its endpoint is up.
Every process started here is ended by PID at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from aios_instance import keys
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.packet import decode_packet, make_packet
from aios_instance.settings import VARIABLES
from tests.support import ROOT, SIMPLE_BLOCK, eventually

CLI = str(Path(sys.executable).with_name("aios-instance"))
_CLEARED = ("AIOS_", "REDIS_", "BLOCK", "INSTANCE_ID", "MGMT_PORT", "METRICS_", "CUSTOM_INIT")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment minus every setting the runtime reads, plus ``extra``; ports off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    env.update(MGMT_PORT="0", METRICS_PORT="0", AIOS_WS_PORT="0", AIOS_IDLE_WAIT_S="0.2")
    env.update(extra)
    return env


class Procs:
    """Block processes of one test: output to a log file, ended by PID at teardown."""

    def __init__(self, tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
        self.tmp_path = tmp_path
        self.started = started  # the `spawned` fixture ends them
        self.logs: dict[int, Path] = {}

    def run(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"block-{len(self.started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [CLI, *args], env=cli_env(**env), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
        self.started.append(proc)
        self.logs[proc.pid] = log
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def wait_for_line(self, proc: subprocess.Popen[bytes], text: str, timeout_s: float = 15) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.log(proc).splitlines():
                if text in line:
                    return line
            assert proc.poll() is None, f"block exited early:\n{self.log(proc)}"
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} in the block's output:\n{self.log(proc)}")

    def terminate(self, proc: subprocess.Popen[bytes], timeout_s: float = 15) -> int:
        """SIGTERM, then wait; returns the exit code."""
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout_s)


@pytest.fixture
def procs(tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> Procs:
    return Procs(tmp_path, spawned)


def cli(*args: str, timeout_s: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a short CLI command (send, dead, tail) to completion."""
    return subprocess.run(
        [CLI, *args],
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, protocol=2)


def test_run_then_send_wait_prints_the_output(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs
) -> None:
    server = redis_factory()
    proc = procs.run("run", SIMPLE_BLOCK, "--redis", server.url, "--block-id", "simple")
    procs.wait_for_line(proc, "serving block simple")
    common = ("--redis", server.url, "--block-id", "simple")
    done = cli("send", *common, "--data", '{"value": 0.7}', "--wait")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        '{"value": 0.7, "passed": true}\n',
        "",
    )
    done = cli("send", *common, "--data", '{"value": 0.2}', "--wait", "--count", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['{"value": 0.2, "passed": false}'] * 3
    client = _client(server)
    assert client.llen(keys.inputs("simple")) == 0
    assert client.keys("aios:reply:*") == []
    assert procs.terminate(proc) == 0
    assert client.smembers(keys.instances("simple")) == set()  # lease given up
    client.close()


def test_run_against_a_redis_that_is_down_names_the_flag_and_the_next_step(
    procs: Procs,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    known = {v.env for v in VARIABLES}
    quick = {"AIOS_STARTUP_TIMEOUT_S": "0"} if "AIOS_STARTUP_TIMEOUT_S" in known else {}
    proc = procs.run("run", SIMPLE_BLOCK, "--redis", url, **quick)
    assert proc.wait(60) == 1
    [error] = [line for line in procs.log(proc).splitlines() if line.startswith("error: ")]
    assert error.startswith(f"error: cannot reach Redis at {url} (from --redis): ")
    assert error.endswith("so that `aios-instance run` starts an embedded one")


def test_run_with_no_redis_embeds_one_that_send_finds(procs: Procs, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    proc = procs.run("run", SIMPLE_BLOCK, "--state-file", str(state))
    line = procs.wait_for_line(proc, "embedded redis-server at redis://127.0.0.1:")
    url = line.split(" at ", 1)[1].strip()
    redis_pid = int(json.loads(state.read_text())["redis_pid"])
    try:
        procs.wait_for_line(proc, "serving block block")
        done = cli("send", "--state-file", str(state), "--data", '{"value": 0.7}', "--wait")
        assert (done.returncode, done.stdout) == (0, '{"value": 0.7, "passed": true}\n')
        client = redis.Redis.from_url(url, protocol=2)
        assert client.llen(keys.inputs("block")) == 0
        client.close()
        assert procs.terminate(proc) == 0
        assert not state.exists()
        eventually(lambda: not _alive(redis_pid), 5, "the embedded redis-server to stop")
    finally:
        if _alive(redis_pid) and b"redis-server" in Path(f"/proc/{redis_pid}/cmdline").read_bytes():
            os.kill(redis_pid, signal.SIGKILL)
    missing = cli("send", "--state-file", str(state), "--data", "{}")
    assert missing.returncode == 1
    assert "no Redis configured" in missing.stderr


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def test_two_block_graph_across_two_servers(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs
) -> None:
    first, second = redis_factory(), redis_factory()
    graph = {
        "is_graph": True,
        "graph": {
            "A": {
                "outputs": [{"host": "127.0.0.1", "port": second.port, "queue_name": "B_inputs"}]
            },
            "B": {"outputs": [{"host": "127.0.0.1", "port": first.port, "queue_name": "FINAL"}]},
        },
    }
    a = procs.run("run", SIMPLE_BLOCK, "--redis", first.url, "--block-id", "A")
    b = procs.run("run", SIMPLE_BLOCK, AIOS_REDIS_URL=second.url, BLOCK_ID="B")  # env, not options
    c1, c2 = _client(first), _client(second)
    n = 300
    pipe = c1.pipeline(transaction=False)
    for i in range(n):
        packet = make_packet({"value": i / n}, session_id="chain", seq_no=i, output_ptr=graph)
        pipe.lpush(keys.inputs("A"), packet.SerializeToString())
    pipe.execute()
    eventually(lambda: c1.llen("FINAL") >= n, what="outputs after block B")
    outputs = [decode_packet(raw) for raw in c1.lrange("FINAL", 0, -1)[::-1]]
    assert len(outputs) == n
    assert sorted(p.seq_no for p in outputs) == list(range(n))
    for packet in outputs:
        # B saw A's output ({"value", "passed"}) and judged its value again.
        assert json.loads(packet.data) == {
            "value": packet.seq_no / n,
            "passed": packet.seq_no / n > 0.5,
        }
        assert json.loads(packet.output_ptr) == graph  # the full pointer travels on
    assert c1.llen(keys.inputs("A")) == c2.llen("B_inputs") == 0
    assert c1.llen(keys.dead_letters("A")) == c2.llen(keys.dead_letters("B")) == 0
    assert procs.terminate(a) == 0
    assert procs.terminate(b) == 0
    c1.close()
    c2.close()


def test_dead_letter_replayed_once_its_endpoint_is_up(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs
) -> None:
    server = redis_factory()
    port = free_port()
    proc = procs.run(
        "run",
        SIMPLE_BLOCK,
        "--redis",
        server.url,
        "--block-id",
        "simple",
        AIOS_DELIVERY_TIMEOUT_S="0.5",
    )
    client = _client(server)
    ptr = {"outputs": [{"host": "127.0.0.1", "port": port, "queue_name": "LATER"}]}
    common = ("--redis", server.url, "--block-id", "simple")
    sent = cli("send", *common, "--data", '{"value": 0.9}', "--output-ptr", json.dumps(ptr))
    assert sent.returncode == 0, sent.stderr
    eventually(lambda: client.llen(keys.dead_letters("simple")) == 1, what="the dead letter")
    listed = cli("dead", "list", *common)
    assert listed.returncode == 0, listed.stderr
    [row] = listed.stdout.splitlines()
    index, outcome, stage, _job, reason = row.split("\t")
    assert (index, outcome, stage) == ("0", "delivery_error", "push")
    assert f"127.0.0.1:{port}/0" in reason
    assert "1 dead letter(s) in simple_dead" in listed.stderr
    shown = cli("dead", "show", "0", *common)
    record: dict[str, Any] = json.loads(shown.stdout)
    assert record["outcome"] == "delivery_error"
    assert record["attempts"] == 1
    with EmbeddedRedis(port) as later:
        replayed = cli("dead", "replay", "0", *common)
        assert replayed.stdout == "replayed 1 packet(s) from 1 record(s)\n"
        assert client.llen(keys.dead_letters("simple")) == 0
        later_client = _client(later)
        eventually(lambda: later_client.llen("LATER") == 1, what="the replayed output")
        [raw] = later_client.lrange("LATER", 0, -1)
        assert json.loads(decode_packet(raw).data) == {"value": 0.9, "passed": True}
        later_client.close()
    assert client.llen(keys.dead_letters("simple")) == 0
    assert procs.terminate(proc) == 0
    client.close()


BROKEN_BLOCK = """
from aios_instance import *

class Broken:
    def __init__(self, context):
        raise RuntimeError("model weights not found")

    def on_preprocess(self, packet):
        return True, []

    def on_data(self, entry):
        return True, None
"""


def test_a_constructor_error_names_the_users_line_and_nothing_says_serving(
    procs: Procs, tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    block = tmp_path / "broken.py"
    block.write_text(BROKEN_BLOCK)
    proc = procs.run("run", f"{block}:Broken", "--redis", redis_server.url)
    assert proc.wait(30) != 0
    output = procs.log(proc)
    assert f"Broken(context) failed at {block}:6 in __init__" in output
    assert "model weights not found" in output
    assert "serving" not in output
