"""Dead-letter records: the JSON object pushed to ``{BLOCK_ID}_dead`` for a job that could
not be processed, and the packets one holds (for ``dead replay``). The runtime builds them
through ``runtime.deadletter.DeadLetters``; the gRPC ingest, which refuses malformed packets
before they reach the runtime, with ``dead_letter_record`` directly."""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from typing import Any

from . import _json

__all__ = ["dead_letter_record", "record_packets"]


def dead_letter_record(
    *,
    outcome: str,
    stage: str,
    reason: str,
    packets: Sequence[bytes],
    block_id: str,
    instance_id: str,
    session_id: str = "",
    seq_no: int = 0,
    traceback: str | None = None,
    attempts: int = 1,
    now: float | None = None,
) -> bytes:
    """The JSON record (bytes) pushed to ``{BLOCK_ID}_dead``."""
    encoded = [base64.b64encode(p).decode() for p in packets]
    record: dict[str, Any] = {
        "reason": reason,
        "outcome": outcome,
        "stage": stage,
        "traceback": traceback,
        "attempts": attempts,
        "block_id": block_id,
        "instance_id": instance_id,
        "session_id": session_id,
        "seq_no": seq_no,
        "time": time.time() if now is None else now,
        "packet": encoded[0] if encoded else "",
        "packets": encoded,
    }
    return _json.dumps_bytes(record)


def record_packets(record: dict[str, Any]) -> list[bytes]:
    """The original packet bytes a record holds (to replay them)."""
    encoded = record.get("packets") or ([record["packet"]] if record.get("packet") else [])
    return [base64.b64decode(p) for p in encoded]
