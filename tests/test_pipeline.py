"""The pure pipeline: every outcome classified, nothing escapes, both signature styles work."""

from __future__ import annotations

import json
from typing import Any, ClassVar

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
from aios_instance._pipeline import Outcome, Pipeline
from aios_instance.packet import decode_packet
from aios_instance.routing import Destination, Router

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
            return True, [PreProcessResult(packet=packet, extra_data={"input": packet.data})]

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
