"""The spec's SimpleBlock under BlockTester produces the spec's outputs."""

from __future__ import annotations

from pathlib import Path

from aios_instance import AIOSMetrics, BlockEvents, BlockTester, SessionsManager, TestContext
from aios_instance.cli import load_block_class

SimpleBlock = load_block_class(f"{Path(__file__).with_name('block.py')}:SimpleBlock")


def test_threshold_decides_passed() -> None:
    tester = BlockTester(SimpleBlock)
    assert tester.run({"value": 0.9}) == [{"value": 0.9, "passed": True}]
    assert tester.run({"value": 0.2}) == [{"value": 0.2, "passed": False}]


def test_custom_context_parameters() -> None:
    context = TestContext()
    context.block_init_parameters = {"threshold": 0.75}
    context.metrics = AIOSMetrics()
    context.sessions = SessionsManager()
    context.events = BlockEvents()
    tester = BlockTester.init_with_context(SimpleBlock, context)
    assert tester.run({"value": 0.6}) == [{"value": 0.6, "passed": False}]
    assert tester.run({"value": 0.8}) == [{"value": 0.8, "passed": True}]


def test_files_travel_to_the_output() -> None:
    tester = BlockTester(SimpleBlock)
    files = [({"filename": "image.jpg", "type": "jpeg"}, b"\xff\xd8\xff")]
    assert tester.run(data={"value": 1.0}, files=files) == [{"value": 1.0, "passed": True}]
    [out] = tester.output_packets()
    assert out.files[0].file_data == b"\xff\xd8\xff"
    assert out.files[0].metadata_dict() == {"filename": "image.jpg", "type": "jpeg"}


def test_bad_input_is_a_classified_failure() -> None:
    tester = BlockTester(SimpleBlock)
    assert tester.run_packet(b"\xff\xff\xffnot a packet") == []
    assert tester.failures[0].outcome.value == "bad_input"
    assert tester.run("not json") == []
    assert tester.failures[0].outcome.value == "bad_input"
    assert "not valid JSON" in tester.failures[0].reason


def test_update_and_management() -> None:
    tester = BlockTester(SimpleBlock)
    assert tester.block.on_update({"threshold": 0.95}) == (True, {"threshold": 0.95})
    assert tester.run({"value": 0.9}) == [{"value": 0.9, "passed": False}]
    assert tester.block.management("get_threshold", {}) == {"threshold": 0.95}
