"""Local multi-block development: two ``aios-instance run`` in one folder, with no flags,
share one embedded Redis, take free control/metrics ports when the defaults are taken, and
each answers ``send --block-id X --wait``; the last one to exit stops the Redis."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import redis

from tests.support import SIMPLE_BLOCK, eventually
from tests.system.test_runtime_e2e import CLI, cli_env


def _env(**extra: str) -> dict[str, str]:
    env = cli_env(**extra)
    del env["MGMT_PORT"], env["METRICS_PORT"]  # the defaults: 18001 and 18000
    del env["AIOS_WS_PORT"]  # and 18002
    return env


class Folder:
    """Commands run in one folder (``cwd``) with no Redis options."""

    def __init__(self, cwd: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
        self.cwd, self.spawned = cwd, spawned

    def run(self, block_id: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.cwd / f"{block_id}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [CLI, "run", SIMPLE_BLOCK],
                env=_env(BLOCK_ID=block_id),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )
        self.spawned.append(proc)
        return proc, log

    def line(self, proc: subprocess.Popen[bytes], log: Path, text: str) -> str:
        def found() -> str:
            assert proc.poll() is None, f"exited early:\n{log.read_text()}"
            return next((x for x in log.read_text().splitlines() if text in x), "")

        return eventually(found, 20, f"{text!r} in {log.name}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, *args], env=_env(), capture_output=True, text=True, timeout=30, cwd=self.cwd
        )


def test_two_runs_in_one_folder_share_one_redis_and_both_answer(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    here = Folder(tmp_path, spawned)
    tok, tok_log = here.run("tok")
    url = here.line(tok, tok_log, "embedded redis-server at ").split(" at ", 1)[1].strip()
    tok_serving = here.line(tok, tok_log, "serving block tok")
    det, det_log = here.run("det")
    assert (
        here.line(det, det_log, "redis-server at ") == f"sharing the embedded redis-server at {url}"
    )
    det_serving = here.line(det, det_log, "serving block det")
    ports = [re.findall(r"(?:control|metrics) port (\d+)", s) for s in (tok_serving, det_serving)]
    assert len({*ports[0], *ports[1]}) == 4, (tok_serving, det_serving)  # no port used twice

    for block_id in ("tok", "det"):
        done = here.cli("send", "--block-id", block_id, "--data", '{"value": 0.7}', "--wait")
        assert (done.returncode, done.stdout, done.stderr) == (
            0,
            '{"value": 0.7, "passed": true}\n',
            "",
        )
    ambiguous = here.cli("send", "--data", "{}")
    assert ambiguous.returncode == 1 and "pass --block-id" in ambiguous.stderr

    tok.send_signal(signal.SIGTERM)  # the one that started the Redis goes first
    assert tok.wait(15) == 0
    done = here.cli("send", "--data", '{"value": 0.1}', "--wait")  # only det runs now
    assert (done.returncode, done.stdout) == (0, '{"value": 0.1, "passed": false}\n')
    det.send_signal(signal.SIGTERM)
    assert det.wait(15) == 0
    client = redis.Redis.from_url(url, protocol=2, socket_connect_timeout=1)

    def stopped() -> bool:
        try:
            client.ping()
        except redis.ConnectionError:
            return True
        return False

    eventually(stopped, 10, "the last run to stop the shared redis-server")
    client.close()
    missing = here.cli("send", "--data", "{}")
    assert missing.returncode == 1 and "start one with `aios-instance run" in missing.stderr


def test_two_runs_started_together_both_serve_on_distinct_ports(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    here = Folder(tmp_path, spawned)
    started = [here.run("a"), here.run("b")]  # no wait in between: they race for the ports
    serving = [here.line(proc, log, "serving block ") for proc, log in started]
    ports = [p for line in serving for p in re.findall(r"(?:control|metrics) port (\d+)", line)]
    assert len(set(ports)) == 4, serving
    for proc, _ in reversed(started):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
