"""runtime/muxing.py: the muxer protocol and bookkeeping."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from aios_instance import (
    AIOSPacket,
    Muxer,
    make_packet,
)
from aios_instance.packet import decode_packet
from aios_instance.runtime.muxing import (
    MuxGroup,
    Muxing,
    PacketMuxer,
    RuntimeMuxer,
)
from aios_instance.runtime.outcome import Accumulator, Outcome
from aios_instance.tools import ExpiredGroup
from tests.compat.blocks import ReferenceMuxer
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


# -- the spec's reference Muxer, written as a subclass (tests/compat/blocks.py) ------------------


class ListMuxer(ReferenceMuxer):
    """The reference merge, with a list (not the dict) as the merged data."""

    def _merge_packets(self, packets: Any) -> AIOSPacket:
        merged: AIOSPacket = super()._merge_packets(packets)
        merged.data = merged.data["inputs"]
        return merged


@pytest.mark.parametrize("as_list", [False, True])
def test_a_reference_style_subclass_hands_over_json_text(as_list: bool) -> None:
    muxer = ListMuxer(N=2) if as_list else ReferenceMuxer(N=2)
    muxing = Muxing(muxer, "block")
    assert feed(muxing, raw_of(1))[0] is None
    (merged, raws), acc = feed(muxing, raw_of(2))
    inputs = [{"v": 1}, {"v": 2}]
    assert isinstance(merged.data, str)  # text, as json.loads(packet.data) needs
    assert json.loads(merged.data) == (inputs if as_list else {"inputs": inputs})
    if not as_list:
        assert merged.data["inputs"] == inputs  # a MuxedData: still readable as the dict
    assert raws == (raw_of(2),) and acc.failures == []
    assert muxing.next_deadline() is None and muxing.hand_back() == []
    assert muxer.store == {} and muxer.counts == {}  # its own dicts, read back


def test_data_json_cannot_hold_is_left_as_it_is() -> None:
    class Odd(ReferenceMuxer):
        def _merge_packets(self, packets: Any) -> AIOSPacket:
            merged = super()._merge_packets(packets)
            merged.data = {"inputs": object()}
            return merged

    muxing = Muxing(Odd(N=2), "block")
    assert feed(muxing, raw_of(1))[0] is None
    (merged, _), _ = feed(muxing, raw_of(2))
    assert type(merged.data) is dict
