"""``aios-instance`` commands run in-process through ``main()`` against a real redis-server.

(``run`` in a subprocess is covered by tests/system/.)
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from aios_instance import keys
from aios_instance.cli import load_block_class, main
from aios_instance.embedded import EmbeddedRedis
from aios_instance.packet import decode_packet, encode_output, make_packet
from aios_instance.runtime.deadletter import dead_letter_record
from tests.support import ROOT

ENV = ("REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD", "AIOS_REDIS_URL", "BLOCK_ID")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def common(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> tuple[str, ...]:
    """Options naming the (flushed) session server and block ``cb``."""
    return ("--redis", redis_server.url, "--block-id", "cb")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_send_pushes_one_session_with_counting_seq_nos(
    capsys: pytest.CaptureFixture[str],
    common: tuple[str, ...],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    attachment = tmp_path / "image.jpg"
    attachment.write_bytes(b"\xff\xd8")
    options = ("--data", '{"value": 1}', "--count", "3", "--seq", "7", "--file", str(attachment))
    code, out, err = _run(capsys, "send", *common, *options)
    assert (code, out, err) == (0, "sent 3 packet(s) to cb_inputs\n", "")
    packets = [decode_packet(r) for r in redis_client.lrange("cb_inputs", 0, -1)[::-1]]
    assert [p.seq_no for p in packets] == [7, 8, 9]
    assert len({p.session_id for p in packets}) == 1
    assert all(json.loads(p.data) == {"value": 1} for p in packets)
    assert packets[0].files[0].file_data == b"\xff\xd8"
    assert packets[0].files[0].metadata_dict() == {"filename": "image.jpg"}


def test_global_options_work_before_and_after_the_command(
    capsys: pytest.CaptureFixture[str], redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    assert _run(capsys, "--redis", redis_server.url, "--block-id", "x", "send")[0] == 0
    assert _run(capsys, "send", "--redis", redis_server.url, "--block-id", "y")[0] == 0
    assert redis_client.llen("x_inputs") == redis_client.llen("y_inputs") == 1


def test_send_to_another_queue_with_an_output_ptr(
    capsys: pytest.CaptureFixture[str], common: tuple[str, ...], redis_client: redis.Redis
) -> None:
    ptr = '{"outputs": [{"host": "h", "queue_name": "q"}]}'
    code, out, _ = _run(capsys, "send", *common, "--to", "ELSEWHERE", "--output-ptr", ptr)
    assert (code, out) == (0, "sent 1 packet(s) to ELSEWHERE\n")
    [raw] = redis_client.lrange("ELSEWHERE", 0, -1)
    assert decode_packet(raw).output_ptr == ptr


def test_send_wait_prints_outputs_and_times_out_without_a_block(
    capsys: pytest.CaptureFixture[str], common: tuple[str, ...], redis_client: redis.Redis
) -> None:
    def answer() -> None:  # a stand-in block: pops the job, pushes to its reply list
        _, raw = redis_client.brpop(["cb_inputs"], timeout=10)  # type: ignore[misc]
        packet = decode_packet(raw)
        queue = json.loads(packet.output_ptr)["outputs"][0]["queue_name"]
        redis_client.lpush(queue, encode_output(packet, '{"echo":true}'))

    thread = threading.Thread(target=answer)
    thread.start()
    code, out, err = _run(capsys, "send", *common, "--data", "{}", "--wait", "--timeout", "10")
    thread.join()
    assert (code, out, err) == (0, '{"echo": true}\n', "")
    assert redis_client.keys(keys.reply("*")) == []
    code, out, err = _run(capsys, "send", *common, "--wait", "--timeout", "0.2")
    assert (code, out) == (1, "")
    assert "no output within 0.2s" in err


def test_send_wait_reports_a_dead_lettered_job_at_once(
    capsys: pytest.CaptureFixture[str], common: tuple[str, ...], redis_client: redis.Redis
) -> None:
    def reject() -> None:  # a stand-in block that dead-letters the job
        _, raw = redis_client.brpop(["cb_inputs"], timeout=10)  # type: ignore[misc]
        packet = decode_packet(raw)
        record = dead_letter_record(
            outcome="user_error",
            stage="on_data",
            reason="on_data failed: too cold",
            packets=[raw],
            block_id="cb",
            instance_id="i",
            session_id=packet.session_id,
            seq_no=packet.seq_no,
        )
        redis_client.lpush(keys.dead_letters("cb"), record)

    thread = threading.Thread(target=reject)
    thread.start()
    code, out, err = _run(capsys, "send", *common, "--data", "{}", "--wait", "--timeout", "30")
    thread.join()
    assert (code, out) == (1, "")  # the dead letter ended the wait, not the 30 s timeout
    assert err == "error: the job was dead-lettered (user_error): on_data failed: too cold\n"
    assert redis_client.keys(keys.reply("*")) == []


def test_bad_data_and_missing_redis_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], common: tuple[str, ...], tmp_path: Path
) -> None:
    code, _, err = _run(capsys, "send", *common, "--data", "{nope")
    assert code == 1
    assert err.startswith("error: --data is not valid JSON")
    nowhere = str(tmp_path / "no-state.json")
    code, _, err = _run(capsys, "send", "--state-file", nowhere, "--data", "{}")
    assert code == 1
    assert "no Redis configured" in err
    code, _, err = _run(capsys, "run", "no_colon_here")
    assert (code, err.count("\n")) == (1, 1)
    assert "FILE.py:Class" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["send", "--count", "x"], "--count: invalid int value"),
        (["dead", "bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
    assert "--help" in err


def test_run_with_missing_block_data_fails_before_starting_anything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    block = ROOT / "examples" / "simple_block" / "block.py"
    missing = tmp_path / "missing.json"
    state = str(tmp_path / "state.json")
    options = ("--block-data", str(missing), "--state-file", state)
    code, out, err = _run(capsys, "run", f"{block}:SimpleBlock", *options)
    assert (code, err.count("\n")) == (1, 1), err
    assert str(missing) in err
    assert out == ""  # no embedded Redis was started, nothing was served
    assert not Path(state).exists()


def test_a_stale_state_file_is_ignored(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    dead_pid = 2**22 + 12345  # above the kernel's pid_max default: never a live process
    state.write_text(json.dumps({"url": "redis://127.0.0.1:1/0", "pid": dead_pid}))
    code, _, err = _run(capsys, "send", "--state-file", str(state))
    assert code == 1
    assert "no Redis configured" in err


def test_tail_prints_and_pops_packets(
    capsys: pytest.CaptureFixture[str], common: tuple[str, ...], redis_client: redis.Redis
) -> None:
    for i in range(3):
        packet = make_packet({"n": i}, session_id="t", seq_no=i, ts=1.5)
        redis_client.lpush("WATCHED", packet.SerializeToString())
    redis_client.lpush("WATCHED", b"\xff\xff")
    code, out, _ = _run(capsys, "tail", "WATCHED", *common, "--count", "4", "--timeout", "5")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[:3] == [
        {"session_id": "t", "seq_no": i, "ts": 1.5, "data": {"n": i}, "files": 0} for i in range(3)
    ]
    assert lines[3]["bytes"] == 2
    assert "not a valid AIOSPacket" in lines[3]["error"]
    assert redis_client.llen("WATCHED") == 0
    code, out, _ = _run(capsys, "tail", "WATCHED", *common, "--timeout", "0.2")
    assert (code, out) == (0, "")


def _dead(client: redis.Redis, packets: list[bytes], **fields: Any) -> None:
    record = dead_letter_record(
        outcome=fields.pop("outcome", "user_error"),
        stage=fields.pop("stage", "on_data"),
        reason=fields.pop("reason", "boom"),
        packets=packets,
        block_id="cb",
        instance_id="i",
        **fields,
    )
    client.lpush(keys.dead_letters("cb"), record)


def test_dead_list_show_and_replay(
    capsys: pytest.CaptureFixture[str], common: tuple[str, ...], redis_client: redis.Redis
) -> None:
    one = make_packet({"v": 1}, session_id="s", seq_no=1).SerializeToString()
    pair = [make_packet({"v": v}, session_id="m", seq_no=2).SerializeToString() for v in (2, 3)]
    _dead(redis_client, [one], session_id="s", seq_no=1, reason="on_data failed: nope")
    _dead(redis_client, pair, outcome="expired", stage="mux", session_id="m", seq_no=2)
    redis_client.lpush(keys.dead_letters("cb"), b"not json at all")

    code, out, err = _run(capsys, "dead", "list", *common)
    assert code == 0
    assert out.splitlines() == [
        "0\tuser_error\ton_data\ts:1\ton_data failed: nope",
        "1\texpired\tmux\tm:2\tboom",
        "2\t?\t?\tNone:None\tnot a dead-letter record: b'not json at all'",
    ]
    assert err == "3 dead letter(s) in cb_dead\n"

    code, out, _ = _run(capsys, "dead", "show", "1", *common)
    shown = json.loads(out)
    assert shown["outcome"] == "expired"
    assert [base64.b64decode(p) for p in shown["packets"]] == pair
    assert [d["data"] for d in shown["decoded"]] == [{"v": 2}, {"v": 3}]

    code, out, _ = _run(capsys, "dead", "replay", "1", "0", *common)
    assert (code, out) == (0, "replayed 3 packet(s) from 2 record(s)\n")
    assert redis_client.lrange("cb_inputs", 0, -1)[::-1] == [*pair, one]
    assert redis_client.llen(keys.dead_letters("cb")) == 1  # the unreadable one stays
    code, out, err = _run(capsys, "dead", "replay", "--all", *common)
    assert (code, out, err) == (
        0,
        "replayed 0 packet(s) from 0 record(s)\n",
        "skipped dead letter 0: it holds no packet\n",
    )
    assert redis_client.llen(keys.dead_letters("cb")) == 1

    code, _, err = _run(capsys, "dead", "show", "5", *common)
    assert code == 1
    assert "no dead letter at index 5 (there are 1)" in err
    code, _, err = _run(capsys, "dead", "replay", *common)
    assert code == 1
    assert "name the dead letters by index" in err


def test_dead_replay_all(
    capsys: pytest.CaptureFixture[str], common: tuple[str, ...], redis_client: redis.Redis
) -> None:
    packets = [make_packet({"v": i}, seq_no=i).SerializeToString() for i in range(4)]
    for raw in packets:
        _dead(redis_client, [raw])
    code, out, _ = _run(capsys, "dead", "replay", "--all", *common)
    assert (code, out) == (0, "replayed 4 packet(s) from 4 record(s)\n")
    assert redis_client.lrange("cb_inputs", 0, -1)[::-1] == packets
    assert redis_client.exists(keys.dead_letters("cb")) == 0


def test_load_block_class_from_a_file_and_a_module(tmp_path: Path) -> None:
    (tmp_path / "helper_mod.py").write_text("VALUE = 41\n")
    block = tmp_path / "my_block.py"
    block.write_text("import helper_mod\nclass B:\n    value = helper_mod.VALUE + 1\n")
    assert load_block_class(f"{block}:B").value == 42  # sibling modules import
    assert load_block_class("aios_instance.embedded:EmbeddedRedis") is EmbeddedRedis
    with pytest.raises(Exception, match="defines no class 'Nope'"):
        load_block_class(f"{block}:Nope")
    with pytest.raises(Exception, match="block file not found"):
        load_block_class(f"{tmp_path / 'missing.py'}:B")
