"""The front door: one sorted __all__ that matches the public names, and the spec's imports."""

from __future__ import annotations

import json
import time
from typing import Any

import aios_instance
import aios_instance.tools

# The stdlib modules the spec's sample blocks use with only `from aios_instance import *`.
REEXPORTED_MODULES = {"json", "time"}


def test_all_is_sorted_and_complete() -> None:
    assert aios_instance.__all__ == sorted(aios_instance.__all__)
    public = {n for n in vars(aios_instance) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(aios_instance, n)).__name__ == "module"}
    assert modules >= REEXPORTED_MODULES
    expected = public - (modules - REEXPORTED_MODULES) - {"annotations"}
    assert set(aios_instance.__all__) == expected


def test_star_import_provides_json_and_time_modules() -> None:
    namespace: dict[str, object] = {}
    exec("from aios_instance import *", namespace)
    assert namespace["json"] is json and namespace["time"] is time


# The spec's sample SimpleBlock, character for character (its "Sample implementation").
SPEC_SIMPLE_BLOCK = '''
class SimpleBlock:
    def __init__(self, context):
        """
        Initializes the block with initial parameters.
        """
        self.context = context
        self.threshold = context.block_init_parameters.get("threshold", 0.5)

    def on_preprocess(self, packet):
        """
        Parses the JSON data from the packet.
        """
        try:
            data = json.loads(packet.data)
            return True, [PreProcessResult(packet=packet, extra_data={"input": data})]
        except Exception as e:
            return False, str(e)

    def on_data(self, preprocessed_entry):
        """
        Processes the input and returns a result based on a simple threshold.
        """
        try:
            input_data = preprocessed_entry.extra_data["input"]
            value = input_data.get("value", 0)

            result = {
                "value": value,
                "passed": value > self.threshold
            }

            return True, OnDataResult(output=result)
        except Exception as e:
            return False, str(e)

    def on_update(self, updated_parameters):
        """
        Updates the threshold value dynamically.
        """
        try:
            if "threshold" in updated_parameters:
                self.threshold = updated_parameters["threshold"]
            return True, updated_parameters
        except Exception as e:
            return False, str(e)

    def health(self):
        """
        Returns basic health status.
        """
        return {"status": "healthy"}

    def management(self, action, data):
        """
        Handles simple management commands.
        """
        if action == "get_threshold":
            return {"threshold": self.threshold}
        elif action == "reset":
            self.threshold = 0.5
            return {"message": "Threshold reset to default"}
        else:
            return {"message": f"Unknown action: {action}"}

    def get_muxer(self):
        """
        No muxing needed for this example.
        """
        return None
'''


def test_spec_simple_block_runs_verbatim_with_only_the_star_import() -> None:
    namespace: dict[str, Any] = {}
    exec("from aios_instance import *\n" + SPEC_SIMPLE_BLOCK, namespace)
    tester = aios_instance.BlockTester(namespace["SimpleBlock"])
    # json.loads in on_preprocess resolves through the star import: a NameError there would
    # be caught by the block's own `except` and come back as a failure, not an output.
    assert tester.run({"value": 0.9}, raise_errors=True) == [{"value": 0.9, "passed": True}]
    assert tester.run({"value": 0.2}, raise_errors=True) == [{"value": 0.2, "passed": False}]


def test_star_import_gives_what_the_spec_uses() -> None:
    namespace: dict[str, object] = {}
    exec("from aios_instance import *", namespace)
    for name in (
        "Block",
        "Context",
        "AIOSPacket",
        "FileInfo",
        "PreProcessResult",
        "OnDataResult",
        "Muxer",
        "Batcher",
        "TimeBasedBatcher",
        "AIOSMetrics",
        "BlockEvents",
        "BlockSideCars",
        "SessionsManager",
        "StateDict",
        "BlockTester",
        "TestContext",
    ):
        assert name in namespace, name
    for name in ("Muxer", "Batcher", "TimeBasedBatcher"):
        assert getattr(aios_instance.tools, name) is namespace[name]


def test_context_always_carries_working_services() -> None:
    ctx = aios_instance.TestContext()
    ctx.metrics.register_counter("x_total", "x")
    ctx.metrics.increment_counter("x_total")
    assert ctx.metrics.sample("x_total") == 1.0
    ctx.sessions.create_session("s", {"a": 1})
    assert ctx.sessions.get_session("s")["a"] == 1
    assert ctx.events.push_event("started", {"k": 1}) is True
    assert ctx.events.recorded[-1]["event_name"] == "started"
    assert ctx.side_cars.names == []
    assert ctx.allocation_info == {"gpus": [], "node_id": "", "cluster_id": ""}
    assert ctx.block_data == {} and ctx.block_init_parameters == {}
