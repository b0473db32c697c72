"""Dead-letter records: what they hold, and the packets they give back."""

from __future__ import annotations

import json

from aios_instance.packet import make_packet
from aios_instance.runtime.deadletter import DeadLetters, dead_letter_record, record_packets
from aios_instance.runtime.outcome import Failure, Outcome
from aios_instance.transport.base import Claim


def test_a_record_holds_reason_job_place_and_packets() -> None:
    raw = make_packet({"v": 1}, session_id="cam", seq_no=7).SerializeToString()
    data = dead_letter_record(
        outcome="user_error",
        stage="on_data",
        reason="asked to fail",
        packets=[raw, b"second"],
        block_id="b",
        instance_id="i",
        session_id="cam",
        seq_no=7,
        traceback="tb",
        attempts=2,
        now=123.0,
    )
    record = json.loads(data)
    assert {k: record[k] for k in ("outcome", "stage", "reason", "attempts", "time")} == {
        "outcome": "user_error",
        "stage": "on_data",
        "reason": "asked to fail",
        "attempts": 2,
        "time": 123.0,
    }
    assert (record["block_id"], record["instance_id"], record["traceback"]) == ("b", "i", "tb")
    assert record_packets(record) == [raw, b"second"]


def test_dead_letters_name_the_job_from_its_packet() -> None:
    records = DeadLetters("b", "i")
    raw = make_packet({"v": 1}, session_id="cam", seq_no=7).SerializeToString()
    poison = records.poison(Claim(raw, 6), 5)
    assert (poison.outcome, poison.reason) == (
        "max_deliveries",
        "delivered 6 times without completing (max_deliveries=5)",
    )
    record = json.loads(poison.data)
    assert (record["session_id"], record["seq_no"], record["attempts"]) == ("cam", 7, 6)
    undelivered = json.loads(records.undelivered([b"\xff\xff"], "down", attempts=3).data)
    assert (undelivered["session_id"], undelivered["seq_no"]) == ("", 0)  # undecodable
    assert (undelivered["outcome"], undelivered["stage"], undelivered["attempts"]) == (
        "delivery_error",
        "push",
        3,
    )


def test_a_failure_becomes_a_record_with_its_own_fields() -> None:
    failure = Failure(Outcome.BAD_INPUT, "decode", "not JSON", "s", 3, None, (b"x",))
    record = DeadLetters("b", "i").failure(failure, attempts=2)
    assert (record.outcome, record.reason) == ("bad_input", "not JSON")
    fields = json.loads(record.data)
    assert (fields["stage"], fields["session_id"], fields["seq_no"], fields["attempts"]) == (
        "decode",
        "s",
        3,
        2,
    )
