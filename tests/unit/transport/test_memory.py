"""The in-memory transport keeps the source contract: FIFO claims, nothing acknowledged
before its commit, release to the front, a crash counting a delivery."""

from __future__ import annotations

import threading

import pytest

from aios_instance.errors import TransportError
from aios_instance.routing import Destination
from aios_instance.transport.base import Commit, Rejected
from aios_instance.transport.memory import MemorySink, MemorySource

OUT = Destination("redis", "local", 6379, "OUT", "")


def _filled(n: int) -> MemorySource:
    source = MemorySource()
    for i in range(n):
        source.put(f"p{i}".encode())
    return source


def test_claims_are_fifo_and_held_until_committed() -> None:
    source = _filled(5)
    claims = source.claim(3, 0)
    assert [c.raw for c in claims] == [b"p0", b"p1", b"p2"]
    assert source.processing == [b"p0", b"p1", b"p2"]
    settled: list[Rejected] = []
    commit = Commit({OUT: [b"o"]}, acks=[b"p0", b"p1"], records=[b"r"], settled=settled.append)
    source.commit(commit)
    assert settled == [{}]
    assert source.processing == [b"p2"]
    assert list(source.lists["OUT"]) == [b"o"]
    assert list(source.dead) == [b"r"]
    source.commit(Commit(acks=[b"p0"]))  # a repeated acknowledgement is harmless
    assert source.processing == [b"p2"]


def test_release_goes_to_the_front_in_order_and_crash_counts_a_delivery() -> None:
    source = _filled(4)
    claims = source.claim(3, 0)
    source.release([c.raw for c in claims[1:]])
    assert [c.raw for c in source.claim(2, 0)] == [b"p1", b"p2"]
    assert source.crash() == 3
    again = source.claim(10, 0)
    assert [(c.raw, c.attempt) for c in again] == [(b"p0", 2), (b"p1", 2), (b"p2", 2), (b"p3", 1)]
    source.commit(Commit(acks=[c.raw for c in again]))
    source.put(b"p0")
    assert source.claim(1, 0)[0].attempt == 1  # an acknowledgement forgets the count


def test_close_hands_back_what_is_claimed() -> None:
    source = _filled(2)
    source.claim(2, 0)
    source.close()
    assert (source.processing, list(source.inputs)) == ([], [b"p0", b"p1"])
    assert source.depth() == 2 and source.oldest() == b"p0"


def test_a_claim_waits_for_a_put() -> None:
    source = MemorySource()
    timer = threading.Timer(0.05, source.put, (b"late",))
    timer.start()
    try:
        assert [c.raw for c in source.claim(4, 5.0)] == [b"late"]
    finally:
        timer.join()


def test_fail_switches_raise_transport_errors() -> None:
    source, sink = _filled(1), MemorySink()
    source.fail = sink.fail = True
    with pytest.raises(TransportError):
        source.claim(1, 0)
    with pytest.raises(TransportError):
        source.commit(Commit())
    with pytest.raises(TransportError):
        sink.push({OUT: [b"x"]})
    assert sink.attempts == 1


def test_sink_rejects_the_lists_it_is_told_to() -> None:
    sink = MemorySink()
    sink.rejecting["BAD"] = "WRONGTYPE (simulated)"
    bad = Destination("redis", "local", 6379, "BAD", "")
    assert sink.push({OUT: [b"a"], bad: [b"b"]}) == {bad: "WRONGTYPE (simulated)"}
    assert sink.lists == {"OUT": [b"a"]}
