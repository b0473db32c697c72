"""``aios-instance dev graph.yaml``: the example chain's three blocks with one command and one
embedded Redis; ``send --wait`` follows the graph to its final output; SIGTERM stops all."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import redis

from tests.support import ROOT, eventually
from tests.system.test_runtime_e2e import CLI, cli_env

EXAMPLE = ROOT / "examples" / "chain"


def test_dev_runs_the_chain_and_send_follows_the_graph(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    for name in ("chain.py", "graph.yaml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(
            [CLI, "dev", "graph.yaml"],
            env=cli_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    spawned.append(dev)

    def serving() -> list[str]:
        assert dev.poll() is None, log.read_text()
        text = log.read_text()
        return (
            re.findall(r"^serving block (\w+)", text, re.M)
            if text.count("serving block") == 3
            else []
        )

    assert sorted(eventually(serving, 30, "the three blocks to serve")) == ["count", "fmt", "tok"]
    text = log.read_text()
    found = re.search(r"^redis at (\S+);", text, re.M)
    assert found, text
    url = found.group(1)
    for block_id in ("tok", "count", "fmt"):
        assert re.search(
            rf"^block {block_id}: chain.py:\w+, control port \d+, metrics port \d+$", text, re.M
        )

    def send(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [CLI, "send", "--block-id", "tok", *args]
        return subprocess.run(
            cmd, env=cli_env(), capture_output=True, text=True, timeout=30, cwd=tmp_path
        )

    pointer = (tmp_path / "graph.ptr.json").read_text()
    data = '{"text": "the cat and the hat and the bat"}'
    done = send("--data", data, "--output-ptr", pointer, "--wait")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        '{"top": [["the", 3], ["and", 2]]}\n',
        "",
    )
    assert send("--data", '{"text": "a cat"}').returncode == 0  # no pointer: default outputs
    client = redis.Redis.from_url(url, protocol=2)
    eventually(lambda: client.llen("OUTPUT") == 1, 15, "the chain's output in OUTPUT")
    client.close()

    dev.send_signal(signal.SIGTERM)
    assert dev.wait(30) == 0
    assert "stopped in" in log.read_text()
    missing = send("--data", "{}")
    assert missing.returncode == 1 and "no Redis configured" in missing.stderr


def test_a_block_that_cannot_start_stops_the_others(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    shutil.copy(EXAMPLE / "chain.py", tmp_path / "chain.py")
    graph = "blocks:\n  - {id: tok, run: chain.py:Tokenizer}\n  - {id: bad, run: chain.py:Nope}\n"
    (tmp_path / "graph.yaml").write_text(graph)
    done = subprocess.run(
        [CLI, "dev", "graph.yaml"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "defines no class 'Nope'" in done.stderr
    assert "error: block bad exited with 1; stopping the others" in done.stderr
