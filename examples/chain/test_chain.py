"""The chain's blocks under BlockTester, one by one and fed into each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aios_instance import BlockTester, TestContext
from aios_instance.cli import load_block_class

CHAIN = Path(__file__).with_name("chain.py")
Tokenizer, Counter, Formatter = (
    load_block_class(f"{CHAIN}:{name}") for name in ("Tokenizer", "Counter", "Formatter")
)


def _tester(cls: type[Any], **parameters: Any) -> BlockTester:
    context = TestContext()
    context.block_init_parameters = parameters
    return BlockTester.init_with_context(cls, context)


def test_each_block() -> None:
    assert BlockTester(Tokenizer).run({"text": "The cat, the HAT."}) == [
        {"words": ["the", "cat", "the", "hat"]}
    ]
    counted = _tester(Counter, min_length=3).run({"words": ["a", "cat", "cat", "hat"]})
    assert counted == [{"counts": {"cat": 2, "hat": 1}}]
    top = _tester(Formatter, top=2).run({"counts": {"b": 2, "a": 2, "c": 5}})
    assert top == [{"top": [["c", 5], ["a", 2]]}]


def test_the_three_blocks_in_a_row() -> None:
    data: Any = {"text": "the cat and the hat and the bat"}
    for tester in (
        BlockTester(Tokenizer),
        _tester(Counter, min_length=3),
        _tester(Formatter, top=2),
    ):
        [data] = tester.run(data)
    assert data == {"top": [["the", 3], ["and", 2]]}


def test_bad_input_is_refused_with_the_blocks_name() -> None:
    tester = BlockTester(Counter)
    assert tester.run({"text": "no words key"}) == []
    assert tester.failures[0].reason.startswith("on_data")
    assert "Counter: bad input: 'words'" in tester.failures[0].reason
