"""The outbox: remote pushes per endpoint, parking with backoff, expiry, rejections, and
commits the source could not take."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from aios_instance.errors import TransportError
from aios_instance.routing import Destination
from aios_instance.runtime import outbox as outbox_module
from aios_instance.runtime.deadletter import DeadLetters
from aios_instance.runtime.hooks import Hooks
from aios_instance.runtime.outbox import Delivery, Outbox
from aios_instance.transport.base import Commit
from aios_instance.transport.memory import MemorySink

A = Destination("grpc", "a:1", 0, "next_inputs", "next")
B = Destination("grpc", "b:1", 0, "next_inputs", "next")


class Events(Hooks):
    def __init__(self) -> None:
        self.failed: list[tuple[str, int]] = []
        self.recovered: list[str] = []

    def delivery_failed(self, endpoint: str, error: Exception, parked: int) -> None:
        self.failed.append((endpoint, parked))

    def delivery_recovered(self, endpoint: str) -> None:
        self.recovered.append(endpoint)


def _outbox(sinks: dict[str, MemorySink], timeout_s: float = 1.0) -> tuple[Outbox, Events]:
    events = Events()
    outbox = Outbox(
        lambda dest: sinks[dest.host], DeadLetters("b", "i"), events, delivery_timeout_s=timeout_s
    )
    return outbox, events


def _delivery(source: bytes, dest: Destination = A, attempts: int = 1) -> Delivery:
    return Delivery((source,), {dest: [source + b"-out"]}, attempts=attempts)


def test_pushed_deliveries_hold_nothing_back() -> None:
    sinks = {"a:1": MemorySink()}
    outbox, _ = _outbox(sinks)
    held, records = outbox.send([_delivery(b"p0"), _delivery(b"p1")], now=0.0)
    assert (held, records) == ([], [])
    assert sinks["a:1"].lists["next_inputs"] == [b"p0-out", b"p1-out"]
    assert sinks["a:1"].attempts == 1  # one round trip for the endpoint
    assert not outbox.busy


def test_an_unreachable_endpoint_parks_backs_off_and_delivers_when_back() -> None:
    sinks = {"a:1": MemorySink(), "b:1": MemorySink()}
    sinks["a:1"].fail = True
    outbox, events = _outbox(sinks, timeout_s=30.0)
    held, _ = outbox.send([_delivery(b"p0"), _delivery(b"p1", B)], now=0.0)
    assert held == [b"p0"]  # p1's endpoint took it
    assert (outbox.parked_outputs, outbox.next_retry_at) == (1, 0.05)
    assert outbox.retry(0.04) == ([], [])  # backing off: not tried
    assert outbox.retry(0.05) == ([], [])  # tried (on a:1's sender, not waited for)
    assert outbox.wait(5)
    assert sinks["a:1"].attempts == 2
    assert outbox.retry(0.06) == ([], [])  # failed again: 100 ms now
    assert outbox.next_retry_at == pytest.approx(0.15)  # from the try
    assert events.failed == [("a:1", 1), ("a:1", 1)]
    sinks["a:1"].fail = False
    assert outbox.retry(0.2) == ([], [])  # tried again
    assert outbox.wait(5)
    assert outbox.retry(0.21) == ([b"p0"], [])
    assert events.recovered == ["a:1"]
    assert (outbox.busy, outbox.parked_outputs) == (False, 0)


def test_outputs_undeliverable_past_the_timeout_are_dead_lettered() -> None:
    sinks = {"a:1": MemorySink()}
    sinks["a:1"].fail = True
    outbox, _ = _outbox(sinks, timeout_s=1.0)
    outbox.send([_delivery(b"p0", attempts=3)], now=10.0)
    acks, records = outbox.retry(11.0)
    assert acks == [b"p0"]
    [record] = records
    fields = json.loads(record.data)
    assert (record.outcome, fields["attempts"]) == ("delivery_error", 3)
    assert "undeliverable to a:1 for 1s" in record.reason
    assert "memory sink set to fail" in record.reason


def test_a_rejected_push_and_an_unusable_address_are_records_at_once() -> None:
    sink = MemorySink()
    sink.rejecting["next_inputs"] = "WRONGTYPE (simulated)"

    def sink_for(dest: Destination) -> Any:
        if dest.host == "bad:x":
            raise ValueError("Port could not be cast to integer value")
        return sink

    outbox = Outbox(sink_for, DeadLetters("b", "i"), Hooks())
    bad = Destination("grpc", "bad:x", 0, "q", "n")
    held, records = outbox.send([_delivery(b"p0"), _delivery(b"p1", bad)], now=0.0)
    assert held == []
    reasons = sorted(r.reason for r in records)
    assert "WRONGTYPE" in reasons[0] and "no connection possible" in reasons[1]


def test_parked_commits_are_resent_in_order_and_a_failing_one_stays() -> None:
    outbox, _ = _outbox({})
    first, second = Commit(acks=[b"1"]), Commit(acks=[b"2"])
    outbox.park_commit(first)
    outbox.park_commit(second)
    assert outbox.busy and outbox.next_retry_at == 0.0
    sent: list[Commit] = []

    def refuse_second(commit: Commit) -> None:
        if commit is second:
            raise TransportError("still away")
        sent.append(commit)

    with pytest.raises(TransportError):
        outbox.resend(refuse_second)
    assert sent == [first] and outbox.deliveries == 1
    outbox.resend(sent.append)
    assert sent == [first, second] and not outbox.busy


def test_backoff_state_is_dropped_with_the_last_output_for_an_endpoint() -> None:
    sinks = {"a:1": MemorySink()}
    sinks["a:1"].fail = True
    outbox, _ = _outbox(sinks, timeout_s=1.0)
    outbox.send([_delivery(b"p0")], now=0.0)
    assert list(outbox._down) == ["a:1"]
    outbox.retry(5.0)  # expired: nothing parked for a:1 any more
    assert outbox._down == {} and not outbox.busy


class Tarpit(MemorySink):
    """An endpoint that accepts a push and does not answer until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    def push(self, batches: Any) -> Any:
        self.calls += 1
        self.entered.set()
        assert self.go.wait(30)
        return super().push(batches)


def test_a_silent_endpoint_holds_only_its_own_outputs() -> None:
    tarpit, fine = Tarpit(), MemorySink()
    sinks = {"a:1": tarpit, "b:1": fine}
    outbox, _ = _outbox(sinks, timeout_s=30.0)
    outbox.push_wait_s = 0.05
    held, _ = outbox.send([_delivery(b"p0"), _delivery(b"p1", B)], now=0.0)
    assert held == [b"p0"]  # waited a little for a:1, then went on
    assert fine.lists["next_inputs"] == [b"p1-out"]
    assert tarpit.entered.is_set()
    # a:1 is busy with its push: the next outputs for it wait behind it, without a try.
    held, _ = outbox.send([_delivery(b"p2"), _delivery(b"p3", B)], now=0.1)
    assert held == [b"p2"] and fine.lists["next_inputs"] == [b"p1-out", b"p3-out"]
    assert tarpit.calls == 1
    tarpit.go.set()
    assert outbox.wait(5)
    assert outbox.retry(0.2) == ([b"p0"], [])  # p0's push landed; p2's starts now
    assert outbox.wait(5)
    assert outbox.retry(0.3) == ([b"p2"], [])
    assert tarpit.lists["next_inputs"] == [b"p0-out", b"p2-out"]  # in order


def test_past_the_bound_outputs_for_a_failed_endpoint_are_refused_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox_module, "MAX_PARKED", 2)
    sinks = {"a:1": MemorySink(), "b:1": MemorySink()}
    sinks["a:1"].fail = True
    outbox, _ = _outbox(sinks, timeout_s=30.0)
    held, records = outbox.send([_delivery(b"p0"), _delivery(b"p1")], now=0.0)
    assert (held, records, outbox.parked_outputs) == ([b"p0", b"p1"], [], 2)
    held, records = outbox.send([_delivery(b"p2"), _delivery(b"p3", B)], now=0.01)
    assert held == []  # p2 refused, p3's endpoint works
    [record] = records
    assert record.outcome == "delivery_error" and "a:1" in record.reason
    assert "already wait for endpoints that failed" in record.reason
    assert sinks["b:1"].lists["next_inputs"] == [b"p3-out"]
    assert not outbox.backpressure  # they wait for a failed endpoint: claiming goes on


def test_parked_bytes_are_counted() -> None:
    sinks = {"a:1": MemorySink()}
    sinks["a:1"].fail = True
    outbox, _ = _outbox(sinks)
    outbox.send([Delivery((b"p",), {A: [b"x" * 1000, b"y" * 24]})], now=0.0)
    assert (outbox.parked_outputs, outbox.parked_bytes) == (2, 1024)


def test_new_outputs_for_an_endpoint_go_after_its_parked_ones() -> None:
    sinks = {"a:1": MemorySink()}
    sinks["a:1"].fail = True
    outbox, _ = _outbox(sinks, timeout_s=30.0)
    assert outbox.send([_delivery(b"p1")], now=0.0)[0] == [b"p1"]
    sinks["a:1"].fail = False  # back, and its backoff is over by the next send
    held, _ = outbox.send([_delivery(b"p2")], now=0.1)
    assert held == [b"p2"]  # not pushed ahead of p1
    assert outbox.retry(0.1) == ([], [])  # both pushed, in order, in one round
    assert outbox.wait(5)
    assert outbox.retry(0.11)[0] == [b"p1", b"p2"]
    assert sinks["a:1"].lists["next_inputs"] == [b"p1-out", b"p2-out"]


def test_with_every_sender_busy_the_loop_waits_a_little_instead_of_spinning() -> None:
    tarpit, other = Tarpit(), MemorySink()
    outbox, _ = _outbox({"a:1": tarpit, "b:1": other}, timeout_s=30.0)
    outbox.push_wait_s = 0.0
    outbox._senders.max_endpoints = 1  # a:1's push holds the only sender
    try:
        outbox.send([_delivery(b"p0")], now=0.0)
        held, _ = outbox.send([_delivery(b"p1", B)], now=0.0)
        assert held == [b"p1"]
        for now in (0.0, 0.05, 0.1):
            outbox.retry(now)
            assert outbox.next_retry_at > now  # looked at again soon, not on every loop
    finally:
        tarpit.go.set()
        outbox.close()


def test_outputs_waiting_for_a_silent_endpoint_are_bounded_by_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox_module, "MAX_PARKED_BYTES", 10_000)
    tarpit = Tarpit()
    outbox, _ = _outbox({"a:1": tarpit}, timeout_s=30.0)
    outbox.push_wait_s = 0.0
    try:
        for i in range(3):
            big = Delivery((b"p%d" % i,), {A: [b"x" * 4_000]})
            outbox.send([big], now=0.0)
        assert outbox.parked_bytes == 12_000 and outbox.backpressure  # claiming pauses
    finally:
        tarpit.go.set()
        outbox.close()


def test_a_retry_that_fails_while_another_send_runs_is_retried_when_due() -> None:
    sinks = {"a:1": MemorySink(), "b:1": MemorySink()}
    sinks["a:1"].fail = True
    outbox, _ = _outbox(sinks, timeout_s=30.0)
    outbox.send([_delivery(b"p0")], now=0.0)  # failed: retry at 0.05
    outbox.retry(0.05)  # the retry's push starts, not waited for
    assert outbox.wait(5)
    outbox.send([_delivery(b"p1", B)], now=0.06)  # sees the retry fail: next at 0.15
    assert outbox.next_retry_at <= 0.15
    sinks["a:1"].fail = False
    outbox.retry(0.2)
    assert outbox.wait(5)
    assert outbox.retry(0.21)[0] == [b"p0"]
