"""The pure pipeline: every outcome classified, nothing escapes, both signature styles work."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections import Counter, defaultdict
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from aios_instance.routing import Destination, Router
from aios_instance.runtime.pipeline import Outcome, Pipeline, PipelineResult
from tests.support import FakeClock

DEFAULT = Destination("redis", "localhost", 6379, "OUTPUT", "")


def pipeline_for(block: Any, block_id: str = "me") -> Pipeline:
    return Pipeline(block, Router(block_id, (DEFAULT,)))


class Echo:
    def __init__(self, context: Any = None) -> None:
        self.calls = 0

    def on_preprocess(self, packet: AIOSPacket) -> Any:
        return True, [
            PreProcessResult(packet=packet, extra_data={"input": json.loads(packet.data)})
        ]

    def on_data(self, entry: PreProcessResult) -> Any:
        self.calls += 1
        return True, OnDataResult(output={"echo": entry.extra_data["input"]})


class OldStyle:
    """Written for the existing SDK: positional PreProcessResult, on_data with is_ws."""

    def __init__(self, context: Any = None) -> None:
        self.seen_ws: list[bool] = []

    def on_preprocess(self, packet: AIOSPacket) -> Any:
        return True, PreProcessResult(packet, {"x": 1}, packet.session_id)

    def on_data(self, entry: PreProcessResult, is_ws: bool = False) -> Any:
        self.seen_ws.append(is_ws)
        return True, OnDataResult(output={"sid": entry.session_id, **entry.extra_data})

    def get_muxer(self) -> None:
        return None


def test_output_carries_identity_routing_and_files() -> None:
    ptr = json.dumps({"outputs": [{"host": "h", "port": 1, "queue_name": "q"}]})
    raw = make_packet(
        {"v": 1}, session_id="s", seq_no=5, ts=3.0, output_ptr=ptr, files=[({"f": 1}, b"z")]
    ).SerializeToString()
    result = pipeline_for(Echo()).process(raw)
    [out] = result.outputs
    packet = decode_packet(out.payload)
    assert (packet.session_id, packet.seq_no, packet.ts, packet.output_ptr) == ("s", 5, 3.0, ptr)
    assert json.loads(packet.data) == {"echo": {"v": 1}}
    assert packet.files[0].file_data == b"z"
    assert out.destinations == (Destination("redis", "h", 1, "q", ""),)
    assert out.sources == (raw,)


def test_old_style_block_runs_unchanged() -> None:
    block = OldStyle()
    pipe = pipeline_for(block)
    assert pipe.on_data_takes_is_ws
    [out] = pipe.process(make_packet({}, session_id="abc").SerializeToString()).outputs
    assert json.loads(decode_packet(out.payload).data) == {"sid": "abc", "x": 1}
    assert block.seen_ws == [False]


def test_get_muxer_is_called_once() -> None:
    calls = []

    class B(Echo):
        def get_muxer(self) -> Muxer:
            calls.append(1)
            return Muxer(N=1)

    pipe = pipeline_for(B())
    for i in range(5):
        pipe.process(make_packet({"i": i}).SerializeToString())
    assert calls == [1]


class Failing(Echo):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def on_preprocess(self, packet: AIOSPacket) -> Any:
        if self.mode == "pre_false":
            return False, "bad thing"
        if self.mode == "pre_raise":
            raise RuntimeError("boom in pre")
        if self.mode == "pre_garbage":
            return "what"
        return super().on_preprocess(packet)

    def on_data(self, entry: PreProcessResult) -> Any:
        if self.mode == "data_false":
            return False, "no good"
        if self.mode == "data_raise":
            raise ValueError("boom in data")
        if self.mode == "data_garbage":
            return 42
        if self.mode == "unserializable":
            return True, OnDataResult(output={"x": object()})
        if self.mode == "held":
            return True, None
        return super().on_data(entry)


def classify(mode: str, ptr: str = "") -> tuple[Outcome, str, str | None, int]:
    result = pipeline_for(Failing(mode)).process(
        make_packet({"v": 1}, session_id="s", seq_no=2, output_ptr=ptr).SerializeToString()
    )
    assert not result.outputs
    if not result.failures:
        return Outcome.HELD, "", None, result.held
    [failure] = result.failures
    assert (failure.session_id, failure.seq_no) == ("s", 2)
    assert failure.packets  # the input travels with the failure (dead letter / replay)
    return failure.outcome, failure.reason, failure.traceback, result.held


def test_every_user_error_is_classified_with_a_reason() -> None:
    assert classify("pre_false")[:2] == (
        Outcome.USER_ERROR,
        "on_preprocess rejected the packet: bad thing",
    )
    outcome, reason, tb, _ = classify("pre_raise")
    assert (
        outcome is Outcome.USER_ERROR and "boom in pre" in reason and "RuntimeError" in (tb or "")
    )
    assert "expected (bool" in classify("pre_garbage")[1]
    assert classify("data_false")[:2] == (Outcome.USER_ERROR, "on_data failed: no good")
    outcome, reason, tb, _ = classify("data_raise")
    assert outcome is Outcome.USER_ERROR and "boom in data" in reason and "ValueError" in (tb or "")
    assert "expected (bool, OnDataResult)" in classify("data_garbage")[1]
    assert "cannot be encoded" in classify("unserializable")[1]
    assert classify("held") == (Outcome.HELD, "", None, 1)


def test_bad_output_ptr_is_a_routing_error() -> None:
    outcome, reason, _, _ = classify("ok", ptr="{not json")
    assert outcome is Outcome.ROUTING_ERROR and "output_ptr" in reason


def test_bad_inputs_are_classified() -> None:
    pipe = pipeline_for(Echo())
    garbage = pipe.process(b"\x0a\xff\xff\xff")
    assert garbage.failures[0].outcome is Outcome.BAD_INPUT
    not_json = pipe.process(AIOSPacket(data="{oops").SerializeToString())
    assert not_json.failures[0].outcome is Outcome.BAD_INPUT
    assert "not valid JSON" in not_json.failures[0].reason


def test_batch_reports_each_packet() -> None:
    pipe = pipeline_for(Echo())
    raws = [make_packet({"i": i}).SerializeToString() for i in range(5)] + [b"\xff\xff"]
    result = pipe.process_batch(raws)
    assert len(result.outputs) == 5 and len(result.failures) == 1
    assert set(result.phase_s) >= {"preprocess", "on_data", "route"}


def test_on_data_batch_sees_the_whole_claim() -> None:
    class Batched(Echo):
        sizes: ClassVar[list[int]] = []

        def on_data_batch(self, entries: list[PreProcessResult]) -> list[Any]:
            self.sizes.append(len(entries))
            return [(True, OnDataResult(output={"n": len(entries)})) for _ in entries]

    block = Batched()
    result = pipeline_for(block).process_batch(
        [make_packet({"i": i}).SerializeToString() for i in range(7)]
    )
    assert block.sizes == [7] and len(result.outputs) == 7


def test_muxer_sources_are_released_with_the_group() -> None:
    class Mux(Echo):
        def get_muxer(self) -> Muxer:
            return Muxer(N=2)

        def on_preprocess(self, packet: AIOSPacket) -> Any:
            data = json.loads(packet.data)  # the merged data is JSON text too
            return True, [PreProcessResult(packet=packet, extra_data={"input": data})]

    pipe = pipeline_for(Mux())
    first = make_packet({"a": 1}, session_id="s", seq_no=1).SerializeToString()
    second = make_packet({"a": 2}, session_id="s", seq_no=1).SerializeToString()
    r1 = pipe.process(first)
    assert r1.waiting_raws == (first,) and not r1.outputs
    r2 = pipe.process(second)
    assert r2.released_raws == (first,)
    [out] = r2.outputs
    assert out.sources == (first, second)
    assert json.loads(decode_packet(out.payload).data) == {"echo": {"inputs": [{"a": 1}, {"a": 2}]}}


def test_time_based_batch_flushes_on_tick_without_new_packets() -> None:
    class Timed(Echo):
        def __init__(self, context: Any = None) -> None:
            super().__init__()
            self.batcher = TimeBasedBatcher(N=10, T=0.5)

        def on_data(self, entry: PreProcessResult) -> Any:
            batch = self.batcher.add_to_batch(entry.packet)
            return (True, OnDataResult(output={"n": len(batch)})) if batch else (True, None)

        def on_batch_timeout(self, batch: list[AIOSPacket]) -> Any:
            return True, OnDataResult(output={"n": len(batch), "timeout": True})

    tester = BlockTester(Timed)
    assert tester.run({"a": 1}) == [] and tester.run({"a": 2}) == []
    deadline = tester.pipeline.next_deadline()
    assert deadline is not None
    assert tester.tick(deadline - 0.01) == []
    assert tester.tick(deadline) == [{"n": 2, "timeout": True}]
    assert tester.pipeline.next_deadline() is None


def raw_of(data: Any, session: str = "s", seq: int = 0) -> bytes:
    return make_packet(data, session_id=session, seq_no=seq, ts=1.0).SerializeToString()


# -- time-based batches in blocks without on_batch_timeout ------------------------------------


class SpecTimed(Echo):
    """The spec's style: a TimeBasedBatcher fed from on_data, and no on_batch_timeout."""

    keep = "packet"

    def __init__(self, context: Any = None) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.batcher = TimeBasedBatcher(N=10, T=1.0, clock=self.clock)

    def on_data(self, entry: PreProcessResult) -> Any:
        batch = self.batcher.add_to_batch(entry.packet if self.keep == "packet" else entry)
        if not batch:
            return True, None
        packets = [p if isinstance(p, AIOSPacket) else p.packet for p in batch]
        return True, OnDataResult(output={"batch": [json.loads(p.data) for p in packets]})


def test_a_lone_packet_comes_out_at_T_with_no_hook() -> None:
    class Lone(SpecTimed):
        def __init__(self, context: Any = None) -> None:
            super().__init__()
            self.batcher = TimeBasedBatcher(N=4, T=0.5, clock=self.clock)

    tester = BlockTester(Lone)
    assert tester.run({"v": 1}) == []
    assert tester.pipeline.next_deadline() == 0.5  # the runtime's wake-up
    assert tester.tick(0.49) == []
    assert tester.tick(0.5) == [{"batch": [{"v": 1}]}]  # what on_data returns for a full batch
    assert tester.failures == () and tester.pipeline.next_deadline() is None


def test_without_a_hook_due_and_drained_batches_are_the_specs_batch_output() -> None:
    class Block(SpecTimed):
        pass

    Block.keep = "packet"
    tester = BlockTester(Block)
    sent = [make_packet({"v": i}, session_id="s", seq_no=i, ts=1.0) for i in range(3)]
    for packet in sent[:2]:
        assert tester.run_packet(packet) == []
    assert tester.tick(1.0) == [{"batch": [{"v": 0}, {"v": 1}]}]
    assert decode_packet(tester.last_result.outputs[0].payload).seq_no == 1  # the last item's
    assert tester.run_packet(sent[2]) == []
    result = tester.pipeline.drain()
    assert result.failures == () and len(result.outputs) == 1
    assert json.loads(decode_packet(result.outputs[0].payload).data) == {"batch": [{"v": 2}]}
    assert len(tester.block.batcher) == 0 and tester.pipeline.drain().outputs == ()


def test_without_a_hook_a_due_batch_of_entries_fails_instead_of_echoing_its_inputs() -> None:
    """Entries nobody ran inference on must not come out as if they were results."""

    class Block(SpecTimed):
        pass

    Block.keep = "entry"
    tester = BlockTester(Block)
    sent = [make_packet({"v": i}, session_id="s", seq_no=i, ts=1.0) for i in range(2)]
    for packet in sent:
        assert tester.run_packet(packet) == []
    assert tester.tick(1.0) == []
    [failure] = tester.failures
    assert failure.outcome.value == "user_error"
    assert "neither on_batch_timeout(batch) nor the batcher's flush_callback" in failure.reason
    assert [decode_packet(raw).seq_no for raw in failure.packets] == [0, 1]


class Called(SpecTimed):
    """The existing SDK's way: TimeBasedBatcher(N, T, flush_callback=...)."""

    mode = "ok"

    def __init__(self, context: Any = None) -> None:
        super().__init__()
        self.batcher = TimeBasedBatcher(10, 1.0, flush_callback=self.flush, clock=self.clock)
        self.flushed: list[list[Any]] = []

    def flush(self, batch: list[AIOSPacket]) -> Any:
        self.flushed.append(batch)
        if self.mode == "raise":
            raise RuntimeError("flush broke")
        if self.mode == "none":
            return None
        return True, OnDataResult(output={"flushed": len(batch)})

    def on_batch_timeout(self, batch: list[AIOSPacket]) -> Any:
        raise AssertionError("flush_callback comes first")


@pytest.mark.parametrize("mode", ["ok", "none", "raise"])
def test_flush_callback_gets_the_due_batch_and_its_return_is_routed(mode: str) -> None:
    class Block(Called):
        pass

    Block.mode = mode
    tester = BlockTester(Block)
    sent = [make_packet({"v": i}, session_id="t", seq_no=i, ts=2.0) for i in range(2)]
    for packet in sent:
        tester.run_packet(packet)
    outputs = tester.tick(1.0)
    assert [len(b) for b in tester.block.flushed] == [2]
    if mode == "ok":
        assert outputs == [{"flushed": 2}] and tester.failures == ()
    elif mode == "none":
        assert outputs == [] and tester.failures == ()
    else:
        [failure] = tester.failures
        assert failure.outcome is Outcome.USER_ERROR and "flush_callback" in failure.reason
        assert [decode_packet(raw) for raw in failure.packets] == sent
    assert tester.pipeline.next_deadline() is None


@pytest.mark.parametrize("mode", ["raise", "false", "garbage"])
def test_a_failing_on_batch_timeout_carries_the_batch_packets(mode: str) -> None:
    class Timed(SpecTimed):
        def on_batch_timeout(self, batch: list[AIOSPacket]) -> Any:
            if mode == "raise":
                raise RuntimeError("flush broke")
            return (False, "cannot flush") if mode == "false" else "garbage"

    tester = BlockTester(Timed)
    sent = [make_packet({"v": i}, session_id="t", seq_no=i, ts=2.0) for i in range(2)]
    for packet in sent:
        tester.run_packet(packet)
    deadline = tester.pipeline.next_deadline()
    assert deadline == 1.0
    result = tester.pipeline.tick(deadline)
    [failure] = result.failures
    assert failure.outcome is Outcome.USER_ERROR and failure.stage == "on_data"
    assert [decode_packet(raw) for raw in failure.packets] == sent
    assert (mode == "raise") is ("flush broke" in failure.reason)
    assert tester.pipeline.next_deadline() is None


# -- the spec's blocks with a Muxer --------------------------------------------------------------


class YourCustomBlock:
    """The spec's YourCustomBlock: its on_preprocess and on_data bodies verbatim (the spec's
    misindented docstring left out); ``merge_count``, which its get_muxer reads, set here."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.threshold = context.block_init_parameters.get("threshold", 0.5)
        self.merge_count = 2

    def on_preprocess(self, packet: Any) -> Any:
        try:
            data = packet.data
            if isinstance(data, str):
                data = json.loads(data)

            if "inputs" in data:
                # Handle merged packet (N > 1)
                results = []
                for input_data in data["inputs"]:
                    result = PreProcessResult(packet=packet, extra_data={"input": input_data})
                    results.append(result)
                return True, results
            else:
                # Normal single input
                return True, [PreProcessResult(packet=packet, extra_data={"input": data})]
        except Exception as e:
            return False, str(e)

    def on_data(self, preprocessed_entry: Any) -> Any:
        try:
            # Example: Access original input
            input_data = json.loads(preprocessed_entry.packet.data)

            # Example output
            output = {
                "result": "inference complete",
                "input_summary": input_data,
                "processed_at": time.time(),
                "metadata": preprocessed_entry.extra_data,
            }

            return True, OnDataResult(output=output)
        except Exception as e:
            return False, str(e)

    def get_muxer(self) -> Muxer:
        return Muxer(N=self.merge_count)


def test_the_specs_custom_block_json_loads_a_muxed_packet() -> None:
    tester = BlockTester(YourCustomBlock)
    assert tester.run({"value": 1}, session_id="cam", seq_no=3, raise_errors=True) == []
    outs = tester.run({"value": 2}, session_id="cam", seq_no=3, raise_errors=True)
    merged = {"inputs": [{"value": 1}, {"value": 2}]}
    assert [o["input_summary"] for o in outs] == [merged, merged]
    assert [o["metadata"] for o in outs] == [{"input": {"value": 1}}, {"input": {"value": 2}}]
    assert {o["result"] for o in outs} == {"inference complete"}
    # Without a muxer the same block reads the plain JSON string.
    single = BlockTester(type("Single", (YourCustomBlock,), {"get_muxer": lambda self: None}))
    [out] = single.run({"value": 5}, raise_errors=True)
    assert out["input_summary"] == {"value": 5}


# -- muxers that filter, and muxers that cannot say what they hold ------------------------------


class MuxBlock:
    """The spec's muxed on_preprocess; on_data echoes each input."""

    def __init__(self, muxer: Any) -> None:
        self.muxer = muxer

    def get_muxer(self) -> Any:
        return self.muxer

    def on_preprocess(self, packet: AIOSPacket) -> Any:
        data = packet.data
        if isinstance(data, str):
            data = json.loads(data)
        if "inputs" in data:
            return True, [
                PreProcessResult(packet=packet, extra_data={"input": d}) for d in data["inputs"]
            ]
        return True, [PreProcessResult(packet=packet, extra_data={"input": data})]

    def on_data(self, entry: PreProcessResult) -> Any:
        return True, OnDataResult(output=entry.extra_data["input"])


class Filtering(Muxer):
    """The spec's "filter out irrelevant packets": drops {"skip": true}, groups the rest."""

    def process_packet(self, packet: AIOSPacket) -> AIOSPacket | None:
        if json.loads(packet.data).get("skip"):
            return None
        return super().process_packet(packet)


def held_raws(pipe: Pipeline) -> list[bytes]:
    assert pipe._muxing is not None
    return pipe._muxing.buffered_raws()


def test_a_packet_the_muxer_filters_out_is_finished_not_kept() -> None:
    pipe = pipeline_for(MuxBlock(Filtering(N=2)))
    keep1, keep2 = raw_of({"v": 1}, seq=1), raw_of({"v": 2}, seq=1)
    assert pipe.process(keep1).waiting_raws == (keep1,)
    for i in range(50):
        result = pipe.process(raw_of({"skip": True, "i": i}, seq=1))
        assert (result.held, result.waiting_raws, result.failures) == (1, (), ())
    assert held_raws(pipe) == [keep1]  # the 50 dropped packets are not kept
    done = pipe.process(keep2)
    assert done.released_raws == (keep1,)
    assert [json.loads(decode_packet(o.payload).data) for o in done.outputs] == [{"v": 1}, {"v": 2}]
    assert all(o.sources == (keep1, keep2) for o in done.outputs)
    assert held_raws(pipe) == [] and pipe.hand_back() == []


class SpecMuxer:
    """The spec's reference Muxer, verbatim: no is_buffered, no expiry."""

    def __init__(self, N: int):
        self.N = N
        self.store: Any = defaultdict(list)
        self.counts: Any = defaultdict(int)

    def process_packet(self, packet: Any) -> Any:
        if self.N == 1:
            return packet  # No merging needed

        key = (packet.session_id, packet.seq_no)
        self.store[key].append(packet)
        self.counts[key] += 1

        if self.counts[key] == self.N:
            merged_packet = self._merge_packets(self.store[key])
            del self.store[key]
            del self.counts[key]
            return merged_packet

        return None

    def _merge_packets(self, packets: Any) -> Any:
        merged_data = {"inputs": [json.loads(p.data) for p in packets]}
        merged_files = [file for p in packets for file in p.files]

        base_packet = copy.deepcopy(packets[0])
        base_packet.data = merged_data
        base_packet.files = merged_files

        return base_packet


def test_a_muxer_without_is_buffered_owns_what_it_takes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aios_instance.runtime.muxing"):
        pipe = pipeline_for(MuxBlock(SpecMuxer(N=2)))
    [message] = [r.getMessage() for r in caplog.records if "is_buffered" in r.getMessage()]
    assert "SpecMuxer" in message and "at-least-once" in message
    first, second = raw_of({"v": 1}, seq=4), raw_of({"v": 2}, seq=4)
    taken = pipe.process(first)
    assert (taken.held, taken.waiting_raws, taken.outputs) == (1, (), ())
    done = pipe.process(second)
    assert [json.loads(decode_packet(o.payload).data) for o in done.outputs] == [{"v": 1}, {"v": 2}]
    assert held_raws(pipe) == [] and pipe.hand_back() == []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aios_instance.runtime.muxing"):
        for i in range(5):
            pipe.process(raw_of({"v": i}, seq=9))
    assert not caplog.records  # said once, at start


def test_eviction_releases_the_evicted_inputs_before_a_late_packet_reuses_the_key() -> None:
    pipe = pipeline_for(MuxBlock(Muxer(N=2, max_groups=1)))
    a1, b1, a2, a3 = (raw_of({"v": v}, s, 0) for v, s in ((1, "a"), (2, "b"), (3, "a"), (4, "a")))
    pipe.process(a1)
    evicting = pipe.process(b1)
    assert evicting.waiting_raws == (b1,) and evicting.released_raws == (a1,)
    [failure] = evicting.failures
    assert failure.outcome is Outcome.EXPIRED and failure.packets == (a1,)
    assert "evicted with 1 of 2" in failure.reason
    late = pipe.process(a2)  # group "a" again: a new group, which evicts "b"
    assert late.released_raws == (b1,) and late.failures[0].packets == (b1,)
    done = pipe.process(a3)
    assert [o.sources for o in done.outputs] == [(a2, a3), (a2, a3)]  # a1 went with its group
    assert held_raws(pipe) == [] and pipe.tick(1e12).failures == ()


@pytest.mark.parametrize("mode", ["raise", "none"])
def test_a_merge_that_fails_or_returns_none_releases_the_whole_group(mode: str) -> None:
    class BadMerge(Muxer):
        def _merge_packets(self, packets: Any) -> AIOSPacket | None:
            if mode == "raise":
                raise RuntimeError("merge broke")
            return None

    pipe = pipeline_for(MuxBlock(BadMerge(N=2)))
    x1, x2 = raw_of({"v": 1}, seq=2), raw_of({"v": 2}, seq=2)
    pipe.process(x1)
    result = pipe.process(x2)
    assert result.released_raws == (x1,) and result.waiting_raws == ()
    if mode == "raise":
        [failure] = result.failures
        assert failure.stage == "mux" and "merge broke" in failure.reason
        assert failure.packets == (x1, x2)
    else:
        assert result.failures == () and result.held == 2
    assert held_raws(pipe) == [] and pipe.hand_back() == []


MUX_PIPE_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("packet"), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("advance"), st.floats(0.0, 3.0), st.just(False)),
        st.tuples(st.just("tick"), st.just(0), st.just(False)),
    ),
    max_size=50,
)


@settings(max_examples=150, deadline=None, database=None)
@given(n=st.integers(1, 3), max_groups=st.integers(1, 3), ops=MUX_PIPE_OPS)
def test_every_input_is_finished_once_and_only_buffered_ones_are_kept(
    n: int, max_groups: int, ops: list[tuple[str, Any, bool]]
) -> None:
    clock = FakeClock()
    muxer = Filtering(N=n, ttl_s=2.0, max_groups=max_groups, clock=clock)
    pipe = pipeline_for(MuxBlock(muxer))
    unfinished: Counter[bytes] = Counter()  # waiting, not yet released
    finished: Counter[bytes] = Counter()

    def account(raws: list[bytes], result: PipelineResult) -> None:
        for raw in result.released_raws:
            assert unfinished[raw] == 1
            unfinished[raw] -= 1
            finished[raw] += 1
        for raw in raws:
            if raw in result.waiting_raws:
                unfinished[raw] += 1
            else:
                finished[raw] += 1  # acknowledged by this very call

    for i, (op, arg, skip) in enumerate(ops):
        if op == "packet":
            raw = raw_of({"id": i, "skip": skip}, "s", arg)
            account([raw], pipe.process(raw))
        elif op == "advance":
            clock.now += arg
        else:
            account([], pipe.tick(clock.now))
        assert sorted(held_raws(pipe)) == sorted((+unfinished).elements())
        assert len(held_raws(pipe)) == len(muxer.pending_packets())
    handed = pipe.hand_back()
    assert sorted(handed) == sorted((+unfinished).elements())
    assert held_raws(pipe) == [] and muxer.pending_packets() == []
    assert all(count == 1 for count in finished.values())
    assert not set(finished) & set(handed)


@settings(max_examples=150, deadline=None)
@given(
    raw=st.binary(max_size=120),
    data=st.text(max_size=40),
    ptr=st.text(max_size=40),
    mode=st.sampled_from(
        [
            "ok",
            "pre_false",
            "pre_raise",
            "pre_garbage",
            "data_false",
            "data_raise",
            "data_garbage",
            "unserializable",
            "held",
        ]
    ),
)
def test_nothing_escapes_the_pipeline(raw: bytes, data: str, ptr: str, mode: str) -> None:
    pipe = pipeline_for(Failing(mode))
    for payload in (raw, AIOSPacket(data=data, output_ptr=ptr).SerializeToString()):
        result = pipe.process(payload)
        accounted = len(result.outputs) + len(result.failures) + result.held
        assert accounted >= 1  # every packet ends in exactly some classified outcome


# --- the hop limit ------------------------------------------------------------------------------
def _hopped(hops: str) -> bytes:
    return AIOSPacket(data="{}", headers={"aios-hops": hops}).SerializeToString()


def test_a_packet_at_the_hop_limit_is_dead_lettered_routing_loop() -> None:
    block = Echo()
    pipeline = Pipeline(block, Router("me", (DEFAULT,)), max_hops=3)
    result = pipeline.process_batch([_hopped("2"), _hopped("3"), _hopped("x")])
    assert len(result.outputs) == 1 and block.calls == 1
    assert decode_packet(result.outputs[0].payload).headers["aios-hops"] == "3"
    loop, bad = result.failures
    assert (loop.outcome, loop.stage) == (Outcome.ROUTING_LOOP, "route")
    assert "passed through 3 blocks" in loop.reason and "AIOS_MAX_HOPS=3" in loop.reason
    assert bad.outcome is Outcome.BAD_INPUT and "not a hop count" in bad.reason


def test_max_hops_0_is_no_limit() -> None:
    pipeline = Pipeline(Echo(), Router("me", (DEFAULT,)), max_hops=0)
    result = pipeline.process_batch([_hopped("100000")])
    assert len(result.outputs) == 1 and not result.failures


class Rebuilds(Echo):
    """Builds a new packet for each entry (it carries no headers)."""

    def on_preprocess(self, packet: AIOSPacket) -> Any:
        fresh = AIOSPacket(session_id=packet.session_id, data=packet.data)
        return True, [PreProcessResult(packet=fresh, extra_data={"input": {}})]


def test_an_output_counts_one_hop_more_than_its_input_whatever_packet_the_block_builds() -> None:
    pipeline = Pipeline(Rebuilds(), Router("me", (DEFAULT,)), max_hops=10)
    result = pipeline.process_batch([_hopped("4")])
    assert decode_packet(result.outputs[0].payload).headers["aios-hops"] == "5"
