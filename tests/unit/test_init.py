"""The front door: one sorted __all__ that matches the public names, and the spec's imports."""

from __future__ import annotations

import json
import time

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


# What the front door and aios_instance.tools gave before the 2026-12 restructuring: blocks
# and tests written against them must keep importing every one of these names.
FRONT_DOOR_2026_12 = {
    "AIOSError",
    "AIOSMetrics",
    "AIOSPacket",
    "BatchBlockProtocol",
    "Batcher",
    "Block",
    "BlockData",
    "BlockEvents",
    "BlockProtocol",
    "BlockSideCars",
    "BlockTestError",
    "BlockTester",
    "ConfigError",
    "Context",
    "DataDecodeError",
    "Destination",
    "Failure",
    "FileInfo",
    "MemoryStateDict",
    "Muxer",
    "OnDataResult",
    "Outcome",
    "Output",
    "PacketDecodeError",
    "PacketError",
    "Pipeline",
    "PipelineResult",
    "PreProcessResult",
    "Router",
    "RoutingError",
    "Runtime",
    "SessionsManager",
    "Settings",
    "SidecarConsumer",
    "StateDict",
    "TestContext",
    "TimeBasedBatcher",
    "TransportError",
    "decode_packet",
    "json",
    "load_block_data",
    "make_packet",
    "time",
}
TOOLS_2026_12 = {"Batcher", "ExpiredGroup", "GroupKey", "MuxedData", "Muxer", "TimeBasedBatcher"}


def test_every_name_the_front_door_gave_is_still_there() -> None:
    assert set(aios_instance.__all__) >= FRONT_DOOR_2026_12
    for name in FRONT_DOOR_2026_12:
        assert getattr(aios_instance, name) is not None, name


def test_every_name_tools_gave_is_still_there() -> None:
    assert set(aios_instance.tools.__all__) >= TOOLS_2026_12
    for name in TOOLS_2026_12:
        assert getattr(aios_instance.tools, name) is not None, name
