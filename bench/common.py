"""What every benchmark process agrees on: key names, the packets and the expected outputs.

The job is the spec's SimpleBlock: ``{"value": v}`` in, ``{"value": v, "passed": v > 0.5}``
out, to the list named by the packet's ``output_ptr`` on the same Redis.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "BLOCK_ID",
    "DEAD_LIST",
    "INPUT_LIST",
    "OUTPUT_LIST",
    "SESSION_ID",
    "THRESHOLD",
    "check_output",
    "decode",
    "expected_data",
    "make_packet",
    "output_ptr",
    "pb_packet",
    "ready_key",
    "value_of",
]

BLOCK_ID = "bench"
INPUT_LIST = f"{BLOCK_ID}_inputs"
DEAD_LIST = f"{BLOCK_ID}_dead"
OUTPUT_LIST = "bench_out"
SESSION_ID = "bench"
THRESHOLD = 0.5


_PROTO = Path(__file__).resolve().parents[1] / "aios_instance" / "_proto" / "aios_packet_pb2.py"
_pb_class: Any = None


def pb_packet() -> Any:
    """The generated ``AIOSPacket`` class.

    Loaded from its file, without importing the ``aios_instance`` package, so that the
    floors' memory figures do not include the runtime's modules. (Protobuf registers the
    identical descriptor only once when the runtime later imports the same module.)
    """
    global _pb_class
    if _pb_class is None:
        if "aios_instance" in sys.modules:
            from aios_instance._proto import aios_packet_pb2

            _pb_class = aios_packet_pb2.AIOSPacket
        else:
            spec = importlib.util.spec_from_file_location("bench_aios_packet_pb2", _PROTO)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _pb_class = module.AIOSPacket
    return _pb_class


def ready_key(instance_id: str) -> str:
    """Key a floor consumer sets once it is connected (the runtime's lease key plays this role)."""
    return f"bench:ready:{instance_id}"


def output_ptr(port: int) -> str:
    """A direct output_ptr naming OUTPUT_LIST on the benchmark's Redis."""
    dest = {"host": "127.0.0.1", "port": port, "queue_name": OUTPUT_LIST, "block_id": "sink"}
    return json.dumps({"outputs": [dest]})


def value_of(seq_no: int) -> float:
    """The input value of packet ``seq_no`` (about half pass the threshold)."""
    return (seq_no % 997) / 997


def expected_data(seq_no: int) -> dict[str, Any]:
    """The output data for packet ``seq_no``."""
    value = value_of(seq_no)
    return {"value": value, "passed": value > THRESHOLD}


def make_packet(seq_no: int, ts: float, ptr: str) -> bytes:
    """A serialized input packet."""
    raw: bytes = pb_packet()(
        session_id=SESSION_ID,
        seq_no=seq_no,
        data=json.dumps({"value": value_of(seq_no)}),
        ts=ts,
        output_ptr=ptr,
    ).SerializeToString()
    return raw


def decode(raw: Any) -> Any:
    """Parse a serialized packet."""
    msg = pb_packet()()
    msg.ParseFromString(raw)
    return msg


def check_output(raw: Any, ptr: str, ts: float | None = None) -> int:
    """Raise AssertionError unless ``raw`` is the correct output of its input; returns seq_no.

    ``ts`` is the input's ts when known (all packets of a throughput run share one).
    """
    msg = decode(raw)
    seq: int = msg.seq_no
    data = json.loads(msg.data)
    if data != expected_data(seq):
        raise AssertionError(f"output {seq}: data {data!r} != {expected_data(seq)!r}")
    if msg.session_id != SESSION_ID or msg.output_ptr != ptr:
        raise AssertionError(f"output {seq}: session_id/output_ptr not carried over")
    if ts is not None and msg.ts != ts:
        raise AssertionError(f"output {seq}: ts {msg.ts!r} != input ts {ts!r}")
    return seq
