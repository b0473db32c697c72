"""A 3-block chain: Tokenizer → Counter → Formatter (see README.md and docs/chain.md).

Each block reads its input packet's JSON ``data`` and returns its output; where that output
goes is the packet's ``output_ptr`` (a graph) or the block's default output.
"""

from __future__ import annotations

import json
import re
from collections import Counter as Tally
from typing import Any

from aios_instance import OnDataResult, PreProcessResult


class _JsonBlock:
    """Parses the packet's data as JSON in on_preprocess; subclasses implement ``step``."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.params = dict(context.block_init_parameters)

    def on_preprocess(self, packet: Any) -> tuple[bool, Any]:
        try:
            data = json.loads(packet.data)
        except ValueError as exc:
            return False, f"input is not JSON: {exc}"
        return True, [PreProcessResult(packet=packet, extra_data={"input": data})]

    def on_data(self, entry: Any) -> tuple[bool, Any]:
        try:
            return True, OnDataResult(output=self.step(entry.extra_data["input"]))
        except (KeyError, TypeError, ValueError) as exc:
            return False, f"{type(self).__name__}: bad input: {exc}"

    def on_update(self, updated: dict[str, Any]) -> tuple[bool, Any]:
        self.params.update(updated)
        return True, updated

    def step(self, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


class Tokenizer(_JsonBlock):
    """``{"text": "..."}`` → ``{"words": [...]}`` (lower case, letters and digits)."""

    def step(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"words": re.findall(r"\w+", str(data["text"]).lower())}


class Counter(_JsonBlock):
    """``{"words": [...]}`` → ``{"counts": {word: n}}``, skipping words shorter than the
    ``min_length`` parameter (default 1)."""

    def step(self, data: dict[str, Any]) -> dict[str, Any]:
        shortest = int(self.params.get("min_length", 1))
        return {"counts": dict(Tally(w for w in data["words"] if len(w) >= shortest))}


class Formatter(_JsonBlock):
    """``{"counts": {...}}`` → ``{"top": [[word, n], ...]}``: the ``top`` parameter's most
    frequent words (default 3), ties in alphabetical order."""

    def step(self, data: dict[str, Any]) -> dict[str, Any]:
        ranked = sorted(data["counts"].items(), key=lambda item: (-item[1], item[0]))
        return {"top": [list(item) for item in ranked[: int(self.params.get("top", 3))]]}
