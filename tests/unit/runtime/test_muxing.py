"""runtime/muxing.py: the muxer protocol and bookkeeping, and how time batchers are found."""

from __future__ import annotations

import gc
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from aios_instance import (
    AIOSPacket,
    BlockTester,
    Muxer,
    OnDataResult,
    PreProcessResult,
    TimeBasedBatcher,
    make_packet,
)
from aios_instance.packet import decode_packet
from aios_instance.runtime.muxing import (
    MuxGroup,
    Muxing,
    PacketMuxer,
    RuntimeMuxer,
    TimeBatchers,
    report_unflushed,
)
from aios_instance.runtime.outcome import Accumulator, Outcome
from aios_instance.tools import ExpiredGroup
from tests.support import FakeClock


def raw_of(value: int, session: str = "s", seq: int = 0) -> bytes:
    return make_packet({"v": value}, session_id=session, seq_no=seq, ts=1.0).SerializeToString()


def feed(muxing: Muxing, raw: bytes) -> tuple[Any, Accumulator]:
    acc = Accumulator()
    return muxing.feed(decode_packet(raw), raw, acc), acc


# -- the protocols -------------------------------------------------------------------------------


class PairOnly:
    """A muxer written for the older SDK: process_packet and is_buffered, nothing else."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, int], AIOSPacket] = {}

    def process_packet(self, packet: AIOSPacket) -> AIOSPacket | None:
        key = (packet.session_id, packet.seq_no)
        first = self.held.pop(key, None)
        if first is None:
            self.held[key] = packet
            return None
        merged = AIOSPacket(session_id=packet.session_id, seq_no=packet.seq_no)
        merged.data = json.dumps({"inputs": [json.loads(first.data), json.loads(packet.data)]})
        return merged

    def is_buffered(self, packet: AIOSPacket) -> bool:
        return any(p is packet for p in self.held.values())


def test_the_tools_muxer_is_everything_the_runtime_uses() -> None:
    muxer: RuntimeMuxer = Muxer(N=2)  # the annotation is a static check (mypy --strict)
    assert isinstance(muxer, RuntimeMuxer)
    assert isinstance(PairOnly(), PacketMuxer) and not isinstance(PairOnly(), RuntimeMuxer)
    group = ExpiredGroup(("s", 1), (AIOSPacket(),), 1, 2, 0.5)
    assert isinstance(group, MuxGroup)


# -- a muxer lacking the optional methods --------------------------------------------------------


def test_a_muxer_without_the_optional_methods_still_works() -> None:
    muxing = Muxing(PairOnly(), "Block")
    first, second = raw_of(1, seq=7), raw_of(2, seq=7)
    kept, acc = feed(muxing, first)
    assert kept is None and acc.waiting_raws == [first]
    assert muxing.buffered_raws() == [first]
    assert muxing.next_deadline() is None  # no next_deadline(): never due
    expired = Accumulator()
    muxing.expire(1e12, expired)  # no expire(): nothing to report
    assert expired.freeze() == Accumulator().freeze()
    merged, acc = feed(muxing, second)
    packet, raws = merged
    assert json.loads(packet.data) == {"inputs": [{"v": 1}, {"v": 2}]}
    assert raws == (first, second) and acc.released_raws == [first]
    assert muxing.buffered_raws() == [] and muxing.hand_back() == []


def test_without_is_buffered_the_muxer_owns_what_it_takes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Bare:
        def process_packet(self, packet: AIOSPacket) -> AIOSPacket | None:
            return None

    with caplog.at_level(logging.WARNING, logger="aios_instance.runtime.muxing"):
        muxing = Muxing(Bare(), "MyBlock")
        for i in range(3):
            kept, acc = feed(muxing, raw_of(i))
            assert (kept, acc.held, acc.waiting_raws) == (None, 1, [])
    [warning] = caplog.records
    assert "Bare of block MyBlock has no is_buffered" in warning.getMessage()
    assert muxing.buffered_raws() == [] and muxing.hand_back() == []


def test_groups_of_a_users_own_type_are_reported_with_what_they_have() -> None:
    @dataclass
    class Stale:
        packets: tuple[AIOSPacket, ...]

    class Expiring(PairOnly):
        def expire(self, now: float) -> list[Stale]:
            stale = [Stale((p,)) for p in self.held.values()]
            self.held.clear()
            return stale

    muxing = Muxing(Expiring(), "Block")
    raw = raw_of(5, seq=1)
    feed(muxing, raw)
    acc = Accumulator()
    muxing.expire(0.0, acc)
    [failure] = acc.failures
    assert failure.outcome is Outcome.EXPIRED and failure.packets == (raw,)
    assert failure.reason == "muxer group ('s', 1) expired with 1 of ? packets"
    assert acc.released_raws == [raw] and muxing.buffered_raws() == []


# -- expiry and eviction -------------------------------------------------------------------------


def test_expiry_is_reported_once() -> None:
    clock = FakeClock()
    muxing = Muxing(Muxer(N=2, ttl_s=1.0, clock=clock), "Block")
    raw = raw_of(1, seq=3)
    feed(muxing, raw)
    assert muxing.next_deadline() == 1.0
    early = Accumulator()
    muxing.expire(0.5, early)
    assert early.failures == []
    acc = Accumulator()
    muxing.expire(1.0, acc)
    [failure] = acc.failures
    assert (failure.outcome, failure.stage, failure.session_id, failure.seq_no) == (
        Outcome.EXPIRED,
        "mux",
        "s",
        3,
    )
    assert failure.reason == "muxer group ('s', 3) expired with 1 of 2 packets"
    assert failure.packets == (raw,) and acc.released_raws == [raw]
    again = Accumulator()
    muxing.expire(5.0, again)
    assert again.failures == [] and again.released_raws == []
    assert muxing.next_deadline() is None and muxing.hand_back() == []


def test_an_eviction_is_reported_at_once_and_not_again_at_expiry() -> None:
    clock = FakeClock()
    muxing = Muxing(Muxer(N=2, ttl_s=1.0, max_groups=1, clock=clock), "Block")
    a, b = raw_of(1, "a"), raw_of(2, "b")
    feed(muxing, a)
    _, acc = feed(muxing, b)
    [evicted] = acc.failures
    assert "evicted with 1 of 2" in evicted.reason and evicted.packets == (a,)
    assert acc.released_raws == [a] and acc.waiting_raws == [b]
    later = Accumulator()
    muxing.expire(10.0, later)
    assert [f.packets for f in later.failures] == [(b,)]  # only b's own expiry


def test_hand_back_returns_every_buffered_input_once() -> None:
    muxing = Muxing(Muxer(N=3), "Block")
    raws = [raw_of(1, seq=1), raw_of(2, seq=1), raw_of(3, seq=2)]
    for raw in raws:
        feed(muxing, raw)
    assert sorted(muxing.hand_back()) == sorted(raws)
    assert muxing.hand_back() == [] and muxing.buffered_raws() == []


# -- time batchers -------------------------------------------------------------------------------


class Lazy:
    """Creates its batchers after construction, one per session, kept in a dict."""

    def __init__(self, context: Any = None) -> None:
        self.clock = FakeClock()
        self.batchers: dict[str, TimeBasedBatcher] = {}

    def on_preprocess(self, packet: AIOSPacket) -> Any:
        return True, [PreProcessResult(packet=packet)]

    def on_data(self, entry: PreProcessResult) -> Any:
        packet = entry.packet
        assert packet is not None
        if packet.session_id not in self.batchers:
            self.batchers[packet.session_id] = TimeBasedBatcher(N=10, T=2.0, clock=self.clock)
        batch = self.batchers[packet.session_id].add_to_batch(packet)
        return (True, OnDataResult(output={"n": len(batch)})) if batch else (True, None)

    def on_batch_timeout(self, batch: list[AIOSPacket]) -> Any:
        sid = batch[0].session_id
        return True, OnDataResult(output={"session": sid, "n": len(batch)})


def test_a_batcher_created_after_construction_is_flushed_on_time() -> None:
    tester = BlockTester(Lazy)
    assert tester.pipeline.time_batchers == [] and tester.pipeline.next_deadline() is None
    tester.run({"v": 1}, session_id="x")
    tester.block.clock.now = 1.0
    tester.run({"v": 2}, session_id="y")
    tester.run({"v": 3}, session_id="x")
    assert tester.pipeline.time_batchers == [tester.block.batchers[s] for s in ("x", "y")]
    assert tester.pipeline.next_deadline() == 2.0
    assert tester.tick(2.0) == [{"session": "x", "n": 2}]
    assert tester.pipeline.next_deadline() == 3.0
    assert tester.tick(3.0) == [{"session": "y", "n": 1}]
    assert tester.pipeline.next_deadline() is None


def test_batchers_kept_as_attributes_are_known_from_the_start() -> None:
    class Block:
        def __init__(self) -> None:
            self.batcher = TimeBasedBatcher(N=2, T=1.0)
            self.other = "not a batcher"

    block = Block()
    assert TimeBatchers(block, on_time=True).known() == [block.batcher]


def test_only_batches_started_inside_the_pipelines_calls_are_claimed() -> None:
    batchers = TimeBatchers(object(), on_time=True)
    outside, inside, elsewhere = (TimeBasedBatcher(N=5, T=1.0) for _ in range(3))
    outside.add_to_batch(1)
    with batchers:
        inside.add_to_batch(1)
        worker = threading.Thread(target=elsewhere.add_to_batch, args=(1,))
        worker.start()
        worker.join(timeout=10)
    assert batchers.known() == [inside]


def test_nested_pipelines_claim_their_own_batchers() -> None:
    outer, inner = TimeBatchers(object(), on_time=True), TimeBatchers(object(), on_time=True)
    first, second, third = (TimeBasedBatcher(N=5, T=1.0) for _ in range(3))
    with outer:
        first.add_to_batch(1)
        with inner:
            second.add_to_batch(1)
        third.add_to_batch(1)
    assert outer.known() == [first, third] and inner.known() == [second]


def test_a_dropped_batcher_is_forgotten() -> None:
    batchers = TimeBatchers(object(), on_time=True)
    with batchers:
        TimeBasedBatcher(N=5, T=1.0).add_to_batch(1)
    gc.collect()
    assert batchers.known() == [] and batchers.next_deadline() is None


def test_a_late_batcher_without_on_batch_timeout_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batchers = TimeBatchers(object(), on_time=False)
    kept = [TimeBasedBatcher(N=5, T=1.0) for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="aios_instance.runtime.muxing"), batchers:
        for batcher in kept:
            batcher.add_to_batch(1)
    assert len(caplog.records) == 1 and "on_batch_timeout" in caplog.records[0].getMessage()
    assert batchers.known() == kept
    assert batchers.next_deadline() is None and list(batchers.due(1e12)) == []
    assert list(batchers.flush_all()) == [[1], [1]]


def test_an_unflushed_batch_keeps_only_what_is_a_packet() -> None:
    packet = make_packet({"v": 1}, session_id="s", seq_no=4, ts=1.0)
    acc = Accumulator()
    report_unflushed([packet, PreProcessResult(packet=packet), "text"], acc)
    [failure] = acc.failures
    assert failure.reason.endswith("(1 of them are not packets: not kept)")
    assert failure.packets == (packet.SerializeToString(),) * 2
    assert (failure.session_id, failure.seq_no, failure.stage) == ("s", 4, "batch")
