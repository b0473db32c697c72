"""runtime/batching.py: how time batchers are found, and what an unflushed batch leaves."""

from __future__ import annotations

import gc
import threading
from typing import Any

from aios_instance import (
    AIOSPacket,
    BlockTester,
    OnDataResult,
    PreProcessResult,
    TimeBasedBatcher,
    make_packet,
)
from aios_instance.runtime.batching import TimeBatchers, batch_output
from tests.support import FakeClock


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
    assert TimeBatchers(block).known() == [block.batcher]


def test_only_batches_started_inside_the_pipelines_calls_are_claimed() -> None:
    batchers = TimeBatchers(object())
    outside, inside, elsewhere = (TimeBasedBatcher(N=5, T=1.0) for _ in range(3))
    outside.add_to_batch(1)
    with batchers:
        inside.add_to_batch(1)
        worker = threading.Thread(target=elsewhere.add_to_batch, args=(1,))
        worker.start()
        worker.join(timeout=10)
    assert batchers.known() == [inside]


def test_nested_pipelines_claim_their_own_batchers() -> None:
    outer, inner = TimeBatchers(object()), TimeBatchers(object())
    first, second, third = (TimeBasedBatcher(N=5, T=1.0) for _ in range(3))
    with outer:
        first.add_to_batch(1)
        with inner:
            second.add_to_batch(1)
        third.add_to_batch(1)
    assert outer.known() == [first, third] and inner.known() == [second]


def test_a_dropped_batcher_is_forgotten() -> None:
    batchers = TimeBatchers(object())
    with batchers:
        TimeBasedBatcher(N=5, T=1.0).add_to_batch(1)
    gc.collect()
    assert batchers.known() == [] and batchers.next_deadline() is None


def test_a_batch_nobody_takes_becomes_the_specs_batch_output() -> None:
    packet = make_packet({"v": 1}, session_id="s", seq_no=4, ts=1.0)
    text = make_packet("not json", session_id="s")
    items = [packet, PreProcessResult(packet=packet), OnDataResult(output={"o": 1}), text, 7]
    assert batch_output(items).output == {"batch": [{"v": 1}, {"v": 1}, {"o": 1}, "not json", 7]}
