"""The spec's BlockWithMuxerAndBatcher under BlockTester: 3 inputs mux into one job, 4 entries
make one batch — with every value distinct (the reference SDK aliased the shared packet)."""

from __future__ import annotations

from pathlib import Path

from aios_instance import BlockTester
from aios_instance.cli import load_block_class

BlockClass = load_block_class(f"{Path(__file__).with_name('block.py')}:BlockWithMuxerAndBatcher")


def test_mux_then_batch() -> None:
    tester = BlockTester(BlockClass)
    values = [0.6, 0.4, 0.7, 0.2, 0.9, 0.1]
    outputs = []
    for i, value in enumerate(values):
        outputs.append(tester.run({"value": value}, session_id="cam", seq_no=i // 3))
    # Group 1 (3 entries) fills 3 of 4 batch slots; group 2's first entry completes the batch.
    assert outputs[:5] == [[], [], [], [], []]
    assert outputs[5] == [
        {
            "batch": [
                {"value": 0.6, "passed": True},
                {"value": 0.4, "passed": False},
                {"value": 0.7, "passed": True},
                {"value": 0.2, "passed": False},
            ]
        }
    ]
    assert tester.last_result.held == 2  # the rest of group 2 waits in the batcher


def test_incomplete_group_expires_with_a_reason() -> None:
    tester = BlockTester(BlockClass)
    assert tester.run({"value": 0.5}, session_id="s", seq_no=7) == []
    deadline = tester.pipeline.next_deadline()
    assert deadline is not None
    assert tester.tick(deadline + 1) == []
    [failure] = tester.failures
    assert failure.outcome.value == "expired" and "1 of 3" in failure.reason
