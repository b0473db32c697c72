"""Tests for aios_instance.tools: Muxer, Batcher, TimeBasedBatcher (fake clocks, no sleeps)."""

from __future__ import annotations

import copy
import json
import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aios_instance.batchers import _batch_claims
from aios_instance.errors import DataDecodeError
from aios_instance.packet import AIOSPacket, FileInfo, decode_packet, make_packet
from aios_instance.tools import (
    Batcher,
    ExpiredGroup,
    MuxedData,
    Muxer,
    TimeBasedBatcher,
)
from tests.support import FakeClock

# No example database: tests must not write into the working tree.
PROPERTY = settings(max_examples=150, deadline=None, database=None)


def pkt(value: Any, session: str = "s", seq: int = 0, **kw: Any) -> AIOSPacket:
    """A packet whose data is ``value`` as JSON text (make_packet keeps a str as raw JSON)."""
    return make_packet(json.dumps(value), session_id=session, seq_no=seq, ts=1.5, **kw)


def run_threads(target: Callable[[int], None], count: int = 4) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()


# -- Muxer: the spec's behaviour ---------------------------------------------------------------


def test_muxer_n1_returns_the_packet_unchanged() -> None:
    muxer = Muxer(N=1)
    packet = pkt({"a": 1})
    assert muxer.process_packet(packet) is packet
    assert packet.data == '{"a": 1}'
    assert muxer.open_groups == 0 and muxer.next_deadline() is None


def test_muxer_n3_merges_data_files_and_keeps_the_first_packets_fields() -> None:
    muxer = Muxer(N=3)
    packets = [
        pkt({"view": i}, "cam", 7, files=[(f'{{"n":{i}}}', bytes([i]))], output_ptr={"o": 1})
        for i in range(3)
    ]
    packets[1].ts = 9.0
    assert muxer.process_packet(packets[0]) is None
    assert muxer.process_packet(packets[1]) is None
    merged = muxer.process_packet(packets[2])
    assert merged is not None and merged is not packets[0]
    assert merged.data == {"inputs": [{"view": 0}, {"view": 1}, {"view": 2}]}
    assert (merged.session_id, merged.seq_no, merged.ts) == ("cam", 7, 1.5)
    assert merged.output_ptr == packets[0].output_ptr
    assert [f.file_data for f in merged.files] == [b"\x00", b"\x01", b"\x02"]
    assert [f.metadata_dict() for f in merged.files] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert packets[0].data == '{"view": 0}'  # the originals are not modified
    assert muxer.open_groups == 0 and muxer.pending_packets() == []


def test_merged_packet_serializes_and_round_trips() -> None:
    muxer = Muxer(N=2)
    muxer.process_packet(pkt([1, 2], files=[("{}", b"abc")]))
    merged = muxer.process_packet(pkt("text", files=[("{}", b"def")]))
    assert merged is not None
    back = decode_packet(merged.SerializeToString())
    assert json.loads(back.data) == {"inputs": [[1, 2], "text"]}
    assert back.json() == merged.data
    assert back.files == [FileInfo("{}", b"abc"), FileInfo("{}", b"def")]
    assert (back.session_id, back.seq_no, back.ts) == ("s", 0, 1.5)


def test_dict_data_is_used_as_is_and_empty_data_becomes_none() -> None:
    muxer = Muxer(N=3)
    muxer.process_packet(AIOSPacket("s", 1, data={"already": "parsed"}))
    muxer.process_packet(AIOSPacket("s", 1, data=""))
    merged = muxer.process_packet(AIOSPacket("s", 1, data=[1]))
    assert merged is not None
    assert merged.data == {"inputs": [{"already": "parsed"}, None, [1]]}


def test_groups_are_keyed_by_session_and_seq_no() -> None:
    muxer = Muxer(N=2)
    assert muxer.process_packet(pkt(1, "a", 0)) is None
    assert muxer.process_packet(pkt(2, "a", 1)) is None
    assert muxer.process_packet(pkt(3, "b", 0)) is None
    assert muxer.open_groups == 3
    merged = muxer.process_packet(pkt(4, "a", 0))
    assert merged is not None and merged.data == {"inputs": [1, 4]}
    assert muxer.open_groups == 2


def test_merged_data_is_json_text_that_reads_as_the_dict() -> None:
    muxer = Muxer(N=2)
    muxer.process_packet(pkt({"view": 0}))
    merged = muxer.process_packet(pkt({"view": 1}))
    assert merged is not None
    data = merged.data
    assert isinstance(data, MuxedData) and isinstance(data, str) and not isinstance(data, dict)
    assert json.loads(data) == {"inputs": [{"view": 0}, {"view": 1}]}
    assert "inputs" in data and data["inputs"][1] == {"view": 1}
    # The spec's on_preprocess: `if isinstance(data, str): data = json.loads(data)`.
    if isinstance(data, str):
        parsed = json.loads(data)
    assert parsed["inputs"] == data["inputs"]
    assert decode_packet(merged.SerializeToString()).data == str(data)


# -- Muxer: the spec's store / counts / _merge_packets ------------------------------------------


class Summing(Muxer):
    """Overrides the merge step only: the group's values summed into one number."""

    def __init__(self, N: int) -> None:
        super().__init__(N)
        self.merged_groups: list[list[AIOSPacket]] = []

    def _merge_packets(self, packets: Any) -> AIOSPacket | None:
        self.merged_groups.append(list(packets))
        out = copy.deepcopy(packets[0])
        out.data = json.dumps({"sum": sum(json.loads(p.data) for p in packets)})
        return out


def test_an_overridden_merge_packets_is_the_merge_process_packet_uses() -> None:
    muxer = Summing(N=3)
    sent = [pkt(i, "s", 1) for i in (1, 2, 4)]
    assert muxer.process_packet(sent[0]) is None and muxer.process_packet(sent[1]) is None
    merged = muxer.process_packet(sent[2])
    assert merged is not None and json.loads(merged.data) == {"sum": 7}
    assert len(muxer.merged_groups) == 1
    assert all(a is b for a, b in zip(muxer.merged_groups[0], sent, strict=True))
    assert muxer.open_groups == 0


def test_the_specs_reference_merge_gets_a_data_json_loads_reads() -> None:
    class SpecMerge(Muxer):
        def _merge_packets(self, packets: Any) -> AIOSPacket:  # the spec's code, verbatim
            merged_data = {"inputs": [json.loads(p.data) for p in packets]}
            merged_files = [file for p in packets for file in p.files]

            base_packet = copy.deepcopy(packets[0])
            base_packet.data = merged_data
            base_packet.files = merged_files

            return base_packet

    muxer = SpecMerge(N=2)
    muxer.process_packet(pkt({"a": 1}, files=[("{}", b"1")]))
    merged = muxer.process_packet(pkt({"a": 2}, files=[("{}", b"2")]))
    assert merged is not None and isinstance(merged.data, MuxedData)
    assert json.loads(merged.data) == {"inputs": [{"a": 1}, {"a": 2}]} == merged.data
    assert [f.file_data for f in decode_packet(merged.SerializeToString()).files] == [b"1", b"2"]


def test_the_default_merge_packets_merges_a_group_like_process_packet() -> None:
    muxer = Muxer(N=2)
    merged = muxer._merge_packets([pkt({"a": 1}, files=[("{}", b"x")]), pkt("", seq=0)])
    assert merged is not None and merged.data == {"inputs": [{"a": 1}, ""]}
    assert [f.file_data for f in merged.files] == [b"x"]


def test_store_and_counts_are_live_read_only_views_of_the_open_groups() -> None:
    muxer = Muxer(N=3)
    store, counts = muxer.store, muxer.counts
    a1, a2, b1 = pkt(1, "a", 0), pkt(2, "a", 0), pkt(3, "b", 5)
    muxer.process_packet(a1)
    muxer.process_packet(b1)
    muxer.process_packet(a2)
    assert dict(counts) == {("a", 0): 2, ("b", 5): 1}
    assert store[("a", 0)] == [a1, a2] and store[("a", 0)][0] is a1
    assert ("b", 5) in store and ("c", 0) not in counts and len(store) == 2
    store[("a", 0)].append(pkt(9, "a", 0))  # a copy: the group is untouched
    assert counts[("a", 0)] == 2
    with pytest.raises(TypeError):
        store[("z", 0)] = []  # type: ignore[index]
    with pytest.raises(TypeError):
        del counts[("a", 0)]  # type: ignore[attr-defined]
    muxer.process_packet(pkt(3, "a", 0))  # completes group a
    assert list(store) == [("b", 5)] and dict(muxer.counts) == {("b", 5): 1}
    with pytest.raises(KeyError):
        store[("a", 0)]


def test_is_buffered_tells_a_held_packet_from_any_other() -> None:
    muxer = Muxer(N=2)
    held, twin = pkt(1, "s", 1), pkt(1, "s", 1)
    assert not muxer.is_buffered(held)
    muxer.process_packet(held)
    assert muxer.is_buffered(held) and not muxer.is_buffered(twin)  # identity, not equality
    muxer.process_packet(pkt(2, "s", 1))
    assert not muxer.is_buffered(held)  # merged: no longer held


def test_take_evicted_hands_each_evicted_group_over_once() -> None:
    clock = FakeClock()
    muxer = Muxer(N=2, max_groups=1, clock=clock)
    first = pkt("x", seq=0)
    muxer.process_packet(first)
    assert muxer.take_evicted() == []
    muxer.process_packet(pkt("y", seq=1))
    (evicted,) = muxer.take_evicted()
    assert evicted.packets == (first,) and evicted.reason == "evicted"
    assert muxer.take_evicted() == [] and muxer.expire() == []
    assert muxer.next_deadline() == 60.0  # only the open group is left


# -- Muxer: expiry, eviction, errors, shutdown -------------------------------------------------


def test_incomplete_group_expires_after_ttl() -> None:
    clock = FakeClock(100.0)
    muxer = Muxer(N=3, ttl_s=10.0, clock=clock)
    first, second = pkt(1, "s", 5), pkt(2, "s", 5)
    muxer.process_packet(first)
    clock.advance(4.0)
    muxer.process_packet(second)
    assert muxer.next_deadline() == 110.0  # measured from the first packet
    clock.advance(5.9)
    assert muxer.expire() == []
    clock.advance(0.1)
    (group,) = muxer.expire()
    assert group == ExpiredGroup(("s", 5), (first, second), 2, 3, 10.0, "expired")
    assert (group.session_id, group.seq_no) == ("s", 5)
    assert muxer.open_groups == 0 and muxer.next_deadline() is None


def test_expire_returns_only_old_groups_oldest_first() -> None:
    clock = FakeClock()
    muxer = Muxer(N=2, ttl_s=5.0, clock=clock)
    for seq in range(3):
        muxer.process_packet(pkt(seq, seq=seq))
        clock.advance(2.0)
    groups = muxer.expire(now=8.5)  # the groups started at 0, 2 and 4
    assert [g.key for g in groups] == [("s", 0), ("s", 1)]
    assert [g.age_s for g in groups] == [8.5, 6.5]
    assert muxer.open_groups == 1 and muxer.next_deadline() == 9.0


def test_late_packet_after_expiry_starts_a_new_group() -> None:
    clock = FakeClock()
    muxer = Muxer(N=2, ttl_s=1.0, clock=clock)
    muxer.process_packet(pkt("a"))
    clock.advance(1.0)
    assert len(muxer.expire()) == 1
    assert muxer.process_packet(pkt("b")) is None
    assert muxer.next_deadline() == 2.0
    merged = muxer.process_packet(pkt("c"))
    assert merged is not None and merged.data == {"inputs": ["b", "c"]}


def test_max_groups_evicts_the_oldest_and_reports_it_on_expire() -> None:
    clock = FakeClock()
    muxer = Muxer(N=2, ttl_s=60.0, max_groups=2, clock=clock)
    oldest = pkt("x", seq=0)
    muxer.process_packet(oldest)
    clock.advance(1.0)
    muxer.process_packet(pkt("y", seq=1))
    clock.advance(1.0)
    muxer.process_packet(pkt("z", seq=2))
    assert muxer.open_groups == 2
    assert muxer.next_deadline() == 2.0  # due now: the runtime collects it at once
    assert oldest in muxer.pending_packets()
    (evicted,) = muxer.expire()
    assert evicted == ExpiredGroup(("s", 0), (oldest,), 1, 2, 2.0, "evicted")
    assert muxer.expire() == [] and muxer.next_deadline() == 61.0


def test_bad_json_raises_and_leaves_the_groups_intact() -> None:
    clock = FakeClock()
    muxer = Muxer(N=2, clock=clock)
    muxer.process_packet(pkt("good", "s", 1))
    muxer.process_packet(pkt("other", "t", 1))
    before = (muxer.open_groups, muxer.next_deadline(), muxer.pending_packets())
    for key in (("s", 1), ("new", 3)):
        with pytest.raises(DataDecodeError) as info:
            muxer.process_packet(AIOSPacket(key[0], key[1], data="{not json"))
        assert (info.value.session_id, info.value.seq_no) == key
    assert (muxer.open_groups, muxer.next_deadline(), muxer.pending_packets()) == before
    merged = muxer.process_packet(pkt("fine", "s", 1))
    assert merged is not None and merged.data == {"inputs": ["good", "fine"]}


def test_drain_returns_every_held_group_and_empties_the_muxer() -> None:
    clock = FakeClock()
    muxer = Muxer(N=3, max_groups=1, clock=clock)
    a, b, c = pkt("a", seq=0), pkt("b", seq=1), pkt("c", seq=1)
    for p in (a, b, c):
        muxer.process_packet(p)
    assert muxer.pending_packets() == [a, b, c]
    clock.advance(3.0)
    groups = muxer.drain()
    assert [(g.key, g.reason, g.packets, g.age_s) for g in groups] == [
        (("s", 0), "evicted", (a,), 0.0),
        (("s", 1), "drained", (b, c), 3.0),
    ]
    assert muxer.pending_packets() == [] and muxer.drain() == [] and muxer.open_groups == 0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"N": 0}, "N"),
        ({"N": True}, "N"),
        ({"N": 2.0}, "N"),
        ({"N": 2, "ttl_s": 0}, "ttl_s"),
        ({"N": 2, "ttl_s": math.inf}, "ttl_s"),
        ({"N": 2, "ttl_s": math.nan}, "ttl_s"),
        ({"N": 2, "max_groups": 0}, "max_groups"),
    ],
)
def test_muxer_validates_its_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must"):
        Muxer(**kwargs)


def test_muxer_is_thread_safe() -> None:
    muxer = Muxer(N=4, max_groups=100_000)
    merged: list[AIOSPacket] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for seq in range(500):
            out = muxer.process_packet(pkt({"from": index}, "s", seq))
            if out is not None:
                with lock:
                    merged.append(out)

    run_threads(worker)
    assert len(merged) == 500 and muxer.open_groups == 0
    for out in merged:
        assert sorted(d["from"] for d in out.data["inputs"]) == [0, 1, 2, 3]


# -- Muxer: property -----------------------------------------------------------------------------

MUX_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("packet"), st.integers(0, 5)),
        st.tuples(st.just("tick"), st.floats(0.0, 3.0)),
        st.tuples(st.just("expire"), st.just(0)),
    ),
    max_size=60,
)


@PROPERTY
@given(
    n=st.integers(1, 4),
    ttl_s=st.floats(0.5, 5.0),
    max_groups=st.integers(1, 4),
    ops=MUX_OPS,
)
def test_muxer_loses_and_duplicates_nothing(
    n: int, ttl_s: float, max_groups: int, ops: list[tuple[str, Any]]
) -> None:
    clock = FakeClock()
    muxer = Muxer(N=n, ttl_s=ttl_s, max_groups=max_groups, clock=clock)
    sent: list[int] = []
    seen: list[int] = []
    groups: list[ExpiredGroup] = []
    for op, arg in ops:
        if op == "packet":
            sent.append(len(sent))
            out = muxer.process_packet(pkt({"id": sent[-1], "g": arg}, "s", arg))
            if out is not None:
                inputs = out.data["inputs"] if n > 1 else [out.json()]
                assert len(inputs) == n and {d["g"] for d in inputs} == {out.seq_no}
                seen.extend(d["id"] for d in inputs)
        elif op == "tick":
            clock.advance(arg)
        else:
            groups.extend(muxer.expire())
        assert muxer.open_groups <= max_groups
    groups.extend(muxer.drain())
    for group in groups:
        assert 0 < group.received == len(group.packets) < group.expected == n
        seen.extend(p.json()["id"] for p in group.packets)
    assert sorted(seen) == sent


# -- Batcher -------------------------------------------------------------------------------------


def test_batcher_emits_exactly_n_as_the_spec() -> None:
    batcher = Batcher(N=3)
    a, b, c, d = (pkt(i) for i in range(4))
    assert batcher.add_to_batch(a) is None
    assert batcher.add_to_batch(b) is None
    assert batcher.add_to_batch(c) == [a, b, c]
    assert len(batcher) == 0
    assert batcher.add_to_batch(d) is None
    assert batcher.pending == (d,) and len(batcher) == 1


def test_batcher_flush_and_any_item_type() -> None:
    batcher = Batcher(N=5)
    for item in ("x", 2, None, {"k": 1}):
        assert batcher.add_to_batch(item) is None
    assert batcher.flush() == ["x", 2, None, {"k": 1}]
    assert batcher.flush() == [] and len(batcher) == 0 and batcher.pending == ()
    assert Batcher(N=1).add_to_batch("only") == ["only"]


@pytest.mark.parametrize("n", [0, -1, True, 1.5, "3"])
def test_batcher_validates_n(n: Any) -> None:
    with pytest.raises(ValueError, match=r"^N must"):
        Batcher(N=n)


# -- TimeBasedBatcher ----------------------------------------------------------------------------


def test_time_based_batcher_emits_on_count() -> None:
    batcher = TimeBasedBatcher(N=2, T=10.0, clock=FakeClock())
    assert batcher.add_to_batch("a") is None
    assert batcher.add_to_batch("b") == ["a", "b"]
    assert batcher.next_deadline() is None and len(batcher) == 0


def test_time_based_batcher_emits_on_add_once_t_passed_since_first_item() -> None:
    clock = FakeClock(50.0)
    batcher = TimeBasedBatcher(N=10, T=1.0, clock=clock)
    batcher.add_to_batch("a")
    clock.advance(0.5)
    batcher.add_to_batch("b")
    assert batcher.next_deadline() == 51.0  # from the first item, not the latest
    clock.advance(0.5)
    assert batcher.add_to_batch("c") == ["a", "b", "c"]
    clock.advance(0.9)
    assert batcher.add_to_batch("d") is None  # a new batch starts its own timer
    assert batcher.next_deadline() == pytest.approx(52.9)


def test_time_based_batcher_poll_flushes_a_due_batch_without_new_items() -> None:
    clock = FakeClock()
    batcher = TimeBasedBatcher(N=10, T=2.0, clock=clock)
    assert batcher.poll() is None and batcher.next_deadline() is None
    batcher.add_to_batch("a")
    clock.advance(1.0)
    batcher.add_to_batch("b")
    assert batcher.poll() is None
    assert batcher.poll(now=1.99) is None
    assert batcher.poll(now=2.0) == ["a", "b"]
    assert batcher.next_deadline() is None and len(batcher) == 0


def test_time_based_batcher_tells_the_runtime_on_its_thread_when_it_starts_holding() -> None:
    claimed: list[TimeBasedBatcher] = []
    batcher, single = TimeBasedBatcher(N=2, T=1.0, clock=FakeClock()), TimeBasedBatcher(1, 1.0)
    _batch_claims.claim = claimed.append
    try:
        batcher.add_to_batch("a")  # a batch starts being held: claimed
        assert batcher.add_to_batch("b") == ["a", "b"]  # handed back, nothing held
        batcher.add_to_batch("c")  # the next batch: claimed again
        assert single.add_to_batch("x") == ["x"]  # never held: nobody to tell
    finally:
        _batch_claims.claim = None
    batcher.flush()
    batcher.add_to_batch("d")  # no runtime running block code: nobody is told
    assert claimed == [batcher, batcher]


def test_time_based_batcher_flush_and_pending() -> None:
    batcher = TimeBasedBatcher(N=3, T=1.0, clock=FakeClock())
    batcher.add_to_batch(1)
    assert batcher.pending == (1,) and len(batcher) == 1
    assert batcher.flush() == [1]
    assert batcher.flush() == [] and batcher.next_deadline() is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"N": 0, "T": 1.0}, "N"),
        ({"N": 2, "T": 0}, "T"),
        ({"N": 2, "T": -1.0}, "T"),
        ({"N": 2, "T": math.nan}, "T"),
        ({"N": 2, "T": math.inf}, "T"),
    ],
)
def test_time_based_batcher_validates_its_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must"):
        TimeBasedBatcher(**kwargs)


# -- batchers: properties and threads ------------------------------------------------------------

BATCH_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.just(0.0)),
        st.tuples(st.just("tick"), st.floats(0.0, 2.0)),
        st.tuples(st.just("poll"), st.just(0.0)),
        st.tuples(st.just("flush"), st.just(0.0)),
    ),
    max_size=80,
)


@PROPERTY
@given(n=st.integers(1, 6), ops=BATCH_OPS)
def test_batcher_emits_every_item_once_in_batches_of_n(
    n: int, ops: list[tuple[str, float]]
) -> None:
    batcher = Batcher(N=n)
    sent: list[int] = []
    out: list[int] = []
    for op, _ in ops:
        if op == "add":
            sent.append(len(sent))
            batch = batcher.add_to_batch(sent[-1])
            assert batch is None or len(batch) == n
            out.extend(batch or [])
        elif op == "flush":
            batch = batcher.flush()
            assert len(batch) < n
            out.extend(batch)
        assert len(batcher) < n
    out.extend(batcher.flush())
    assert out == sent


@PROPERTY
@given(n=st.integers(1, 6), t=st.floats(0.1, 3.0), ops=BATCH_OPS)
def test_time_based_batcher_emits_every_item_once_and_never_more_than_n(
    n: int, t: float, ops: list[tuple[str, float]]
) -> None:
    clock = FakeClock()
    batcher = TimeBasedBatcher(N=n, T=t, clock=clock)
    sent: list[int] = []
    out: list[int] = []
    for op, arg in ops:
        deadline = batcher.next_deadline()
        batch: list[Any] | None = None
        if op == "add":
            sent.append(len(sent))
            batch = batcher.add_to_batch(sent[-1])
            due = deadline is not None and clock.now >= deadline
            assert batch is None or len(batch) == n or due
        elif op == "poll":
            batch = batcher.poll()
            assert (batch is not None) == (deadline is not None and clock.now >= deadline)
        elif op == "flush":
            batch = batcher.flush()
        else:
            clock.advance(arg)
        assert batch is None or 0 <= len(batch) <= n
        out.extend(batch or [])
        assert len(batcher) < n
    out.extend(batcher.flush())
    assert out == sent


@pytest.mark.parametrize(
    "make",
    [lambda: Batcher(N=7), lambda: TimeBasedBatcher(N=7, T=3600.0)],
    ids=["Batcher", "TimeBasedBatcher"],
)
def test_batchers_are_thread_safe(make: Callable[[], Batcher | TimeBasedBatcher]) -> None:
    batcher = make()
    batches: list[list[Any]] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for i in range(2_500):
            batch = batcher.add_to_batch((index, i))
            if batch is not None:
                with lock:
                    batches.append(batch)

    run_threads(worker)
    rest = batcher.flush()
    assert all(len(b) == 7 for b in batches)
    assert len(batches) == 10_000 // 7 and len(rest) == 10_000 % 7
    items = [item for b in batches for item in b] + rest
    assert Counter(items) == Counter((t, i) for t in range(4) for i in range(2_500))


def test_time_based_batcher_takes_the_existing_sdks_flush_callback() -> None:
    def flush(batch: list[Any]) -> None:
        return None

    assert TimeBasedBatcher(2, 1.0, flush).flush_callback is flush
    assert TimeBasedBatcher(2, 1.0, flush_callback=flush).flush_callback is flush
    assert TimeBasedBatcher(2, 1.0).flush_callback is None
    with pytest.raises(TypeError, match="flush_callback must be callable"):
        TimeBasedBatcher(2, 1.0, flush_callback="nope")  # type: ignore[arg-type]
