"""``aios-instance``'s options and the errors that say what to do: --version, the bare
command, --redis checked like AIOS_REDIS_URL, unreachable Redis errors, module:Class from the
current directory, tail --peek, and send --wait with a timeout or a graph."""

from __future__ import annotations

import json
import sys
import threading
from importlib import metadata
from pathlib import Path

import pytest
import redis

from aios_instance.cli import load_block_class, main
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.packet import decode_packet, encode_output, make_packet
from tests.unit import test_cli as base

# The environment cleared, the session server named (block ``cb``), main() run in-process.
_clean_env = base._clean_env
common = base.common
_run = base._run


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"aios-instance {metadata.version('aios-instance')}\n"


def test_bare_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys)
    assert (code, out) == (2, "")
    assert err.startswith("usage: aios-instance") and "send a job to a block" in err


def test_redis_flag_is_checked_like_the_setting(
    capsys: pytest.CaptureFixture[str], redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    code, out, err = _run(capsys, "send", "--redis", "localhost:63x9", "--data", "{}")
    assert (code, out) == (1, "")
    assert (
        err
        == "error: --redis: not a Redis address: 'localhost:63x9' (use host, host:port or a URL)\n"
    )
    code, _, err = _run(capsys, "send", "--redis", "http://x", "--data", "{}")
    assert code == 1 and err.startswith("error: --redis: not a Redis URL: 'http://x'")
    code, out, _ = _run(capsys, "send", "--redis", f"127.0.0.1:{redis_server.port}", "--data", "{}")
    assert (code, out) == (0, "sent 1 packet(s) to block_inputs\n")  # host:port works too
    assert redis_client.llen("block_inputs") == 1


@pytest.mark.parametrize(
    ("env", "flag", "source"),
    [
        ({}, True, "(from --redis)"),
        ({"AIOS_REDIS_URL": "url"}, False, "(from AIOS_REDIS_URL)"),
        ({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "port"}, False, "(from REDIS_HOST/REDIS_PORT)"),
    ],
)
def test_unreachable_redis_names_the_url_its_source_and_the_next_step(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    flag: bool,
    source: str,
) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    for name, value in env.items():
        monkeypatch.setenv(name, {"url": url, "port": str(port)}.get(value, value))
    for command in (["send", "--data", "{}"], ["tail", "Q", "--peek"], ["dead", "list"]):
        code, out, err = _run(capsys, *command, *(["--redis", url] if flag else []))
        assert (code, out) == (1, "")
        assert err.startswith("error: cannot reach Redis at redis://") and source in err
        assert f"127.0.0.1:{port}/0" in err and "s3cret" not in err
        assert "start a Redis there" in err and len(err.splitlines()) == 1


def test_module_class_loads_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "chain_cwd_block.py").write_text("class Tokenizer:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert load_block_class("chain_cwd_block:Tokenizer").__name__ == "Tokenizer"
    finally:
        sys.modules.pop("chain_cwd_block", None)


def test_tail_peek_prints_without_popping(
    capsys: pytest.CaptureFixture[str], common: tuple[str, ...], redis_client: redis.Redis
) -> None:
    for i in range(3):
        packet = make_packet({"n": i}, session_id="p", seq_no=i, ts=2.0)
        redis_client.lpush("PEEKED", packet.SerializeToString())
    code, out, _ = _run(capsys, "tail", "PEEKED", *common, "--peek")
    assert code == 0
    assert [json.loads(line)["seq_no"] for line in out.splitlines()] == [0, 1, 2]  # oldest first
    code, out, _ = _run(capsys, "tail", "PEEKED", *common, "--peek", "--count", "2")
    assert [json.loads(line)["seq_no"] for line in out.splitlines()] == [0, 1]
    assert redis_client.llen("PEEKED") == 3


def test_send_wait_timeout_takes_its_queued_jobs_back(
    capsys: pytest.CaptureFixture[str], common: tuple[str, ...], redis_client: redis.Redis
) -> None:
    redis_client.lpush("cb_inputs", b"someone else's job")
    code, out, err = _run(capsys, "send", *common, "--count", "2", "--wait", "--timeout", "0.2")
    assert (code, out) == (1, "")
    assert "no output within 0.2s" in err
    assert "removed 2 unanswered job(s) still queued in cb_inputs" in err
    assert redis_client.lrange("cb_inputs", 0, -1) == [b"someone else's job"]


def test_send_wait_says_which_jobs_it_left(
    capsys: pytest.CaptureFixture[str], common: tuple[str, ...], redis_client: redis.Redis
) -> None:
    taken = threading.Thread(target=redis_client.brpop, args=(["cb_inputs"], 10))
    taken.start()  # a block that claims the job and never answers
    code, _, err = _run(capsys, "send", *common, "--wait", "--timeout", "0.5")
    taken.join()
    assert code == 1
    assert "1 job(s) were no longer in cb_inputs (taken by a block or answered)" in err


def test_send_wait_sets_a_graph_final_output_and_refuses_a_direct_pointer(
    capsys: pytest.CaptureFixture[str], common: tuple[str, ...], redis_client: redis.Redis
) -> None:
    graph = {"is_graph": True, "graph": {"cb": {"outputs": [{"host": "h", "block_id": "next"}]}}}

    def last_block() -> None:  # pops the job and sends its output to the graph's final
        _, raw = redis_client.brpop(["cb_inputs"], timeout=10)  # type: ignore[misc]
        packet = decode_packet(raw)
        pointer = json.loads(packet.output_ptr)
        assert pointer["graph"]["cb"] == graph["graph"]["cb"]  # the rest of the graph is kept
        queue = pointer["graph"]["final"]["outputs"][0]["queue_name"]
        redis_client.lpush(queue, encode_output(packet, '{"done": 1}'))

    thread = threading.Thread(target=last_block)
    thread.start()
    ptr = json.dumps(graph)
    code, out, err = _run(capsys, "send", *common, "--output-ptr", ptr, "--wait", "--timeout", "10")
    thread.join()
    assert (code, out, err) == (0, '{"done": 1}\n', "")
    direct = '{"outputs": [{"host": "h", "queue_name": "q"}]}'
    code, _, err = _run(capsys, "send", *common, "--output-ptr", direct, "--wait")
    assert code == 1 and "--wait follows only a graph --output-ptr" in err
    assert redis_client.llen("cb_inputs") == 0  # refused before anything was sent
