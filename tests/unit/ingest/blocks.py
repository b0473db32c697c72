"""Blocks the ingest tests serve: one that streams deltas, one that waits for a signal."""

from __future__ import annotations

import json
import threading
from typing import Any

from aios_instance import OnDataResult, PreProcessResult

END = "[END_OF_STREAM]"
release = threading.Event()  # what a "wait" job waits for (set by the test)


class Streamer:
    """``{"words": n}``: n deltas then the end marker, then ``{"text", "is_ws"}``;
    ``{"fail": "why"}`` refuses; ``{"raise": true}`` raises; ``{"wait": true}`` waits for
    ``release``; ``{"big": n}`` writes n deltas of 4 KiB."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def on_preprocess(self, packet: Any) -> Any:
        return True, [PreProcessResult(packet=packet, extra_data=json.loads(packet.data))]

    def on_data(self, entry: Any, is_ws: bool = False) -> Any:
        job = entry.extra_data
        sid = entry.packet.session_id
        if "fail" in job:
            return False, job["fail"]
        if job.get("raise"):
            raise RuntimeError("boom")
        if job.get("wait"):
            release.wait(30)
        for i in range(job.get("big", 0)):
            self.context.write_ws(sid, {"delta": "x" * 4096, "i": i})
        words = [f"w{i}" for i in range(job.get("words", 0))]
        for word in words:
            self.context.write_ws(sid, {"delta": word})
        if words:
            self.context.write_ws(sid, {"delta": END})
        files = [f.metadata_dict()["filename"] for f in entry.packet.files]
        return True, OnDataResult(output={"text": " ".join(words), "is_ws": is_ws, "files": files})
