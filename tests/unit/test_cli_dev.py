"""The dev graph file: its checks, and the output_ptr it becomes (routed by the real Router)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios_instance._cli_dev import DevBlock, load_graph, output_ptr
from aios_instance.errors import ConfigError
from aios_instance.routing import Router
from tests.support import ROOT

CHAIN = ROOT / "examples" / "chain" / "graph.yaml"


def test_the_example_graph_loads() -> None:
    blocks = load_graph(CHAIN)
    assert [(b.id, b.run, b.next) for b in blocks] == [
        ("tok", "chain.py:Tokenizer", ("count",)),
        ("count", "chain.py:Counter", ("fmt",)),
        ("fmt", "chain.py:Formatter", ()),
    ]
    assert blocks[1].data == {"parameters": {"min_length": 3}}


def test_each_block_routes_to_its_successors_and_the_last_to_final() -> None:
    blocks = [DevBlock("a", "x:A", next=("b", "c")), DevBlock("b", "x:B"), DevBlock("c", "x:C")]
    pointer = output_ptr(blocks, "redis://127.0.0.1:6400/2")
    routed = {b.id: Router(b.id, ()).route(pointer) for b in blocks}
    assert [(d.host, d.port, d.db, d.queue_name) for d in routed["a"]] == [
        ("127.0.0.1", 6400, 2, "b_inputs"),
        ("127.0.0.1", 6400, 2, "c_inputs"),
    ]
    assert [d.queue_name for d in routed["b"]] == [d.queue_name for d in routed["c"]] == ["OUTPUT"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- just a list\n", "expected a mapping with a non-empty 'blocks' list"),
        ("blocks: []\n", "expected a mapping with a non-empty 'blocks' list"),
        ("blocks: [{id: a}]\n", "blocks[0]: needs 'id' and 'run'"),
        ("blocks: [{id: a, run: x:A, data: 3}]\n", "'data' must be a mapping"),
        ("blocks: [{id: a, run: x:A}, {id: a, run: x:B}]\n", "block ids must be unique"),
        ("blocks: [{id: a, run: x:A}]\ngraph: {a: [b]}\n", "not in 'blocks': ['b']"),
        ("blocks: [{id: a, run: x:A}]\ngraph: {a: 3}\n", "graph['a'] must be a list"),
        ("blocks: [{id: a, run: x:A}]\ngraph: [a]\n", "'graph' must map a block id"),
        ("blocks: [{id: a\n", "cannot read"),
    ],
)
def test_a_bad_graph_file_is_one_clear_error(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "graph.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_graph(path)
    assert problem in raised.value.message and str(path) in raised.value.message
