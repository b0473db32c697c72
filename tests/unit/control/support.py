"""What the control tests share: settings for a runtime with its control API on a free port,
a runtime serving in-process until /ready says 200, a block with switchable callbacks, and a
gate of concurrent slow /mgmt calls. Used by tests/unit/control and tests/system."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from aios_instance import Block, OnDataResult, PreProcessResult
from aios_instance.blockdata import BlockData
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.runtime.block import Runtime
from aios_instance.settings import Settings
from tests.support import eventually


def control_settings(server: EmbeddedRedis, **overrides: Any) -> Settings:
    """Settings for a runtime on ``server`` with its control API on a free loopback port."""
    block_id = overrides.pop("block_id", f"ctl-{uuid.uuid4().hex[:8]}")
    values: dict[str, Any] = {
        "block_id": block_id,
        "redis_url_override": server.url,
        "mgmt_port": free_port(),
        "metrics_port": 0,
        "ws_port": 0,
        "control_bind": "127.0.0.1",
        "lease_ttl_s": 5.0,
        "idle_wait_s": 0.2,
        "default_output": f"{block_id}_out",
    }
    return Settings(**{**values, **overrides})


def is_ready(base: str) -> bool:
    try:
        return httpx.get(base + "/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def running(
    block_class: type[Any],
    server: EmbeddedRedis,
    block_data: BlockData | None = None,
    **overrides: Any,
) -> Iterator[tuple[Runtime, str]]:
    """A runtime serving ``block_class`` in-process; yielded once /ready says 200."""
    s = control_settings(server, **overrides)
    runtime = Block(block_class, s, block_data=block_data).start()
    base = f"http://127.0.0.1:{s.mgmt_port}"

    def up() -> bool:
        assert runtime.thread is not None and runtime.thread.is_alive(), "runtime died"
        return is_ready(base)

    try:
        eventually(up, what="the control API to be ready")
        yield runtime, base
    finally:
        runtime.stop()
        assert runtime.wait(10)


class PassThrough:
    """The smallest block: one entry per packet, an empty output; no optional callbacks."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def on_preprocess(self, packet: Any) -> Any:
        return True, [PreProcessResult(packet=packet, extra_data={})]

    def on_data(self, entry: Any) -> Any:
        return True, OnDataResult(output={})


class ControlBlock:
    """Threshold block with switchable health(), management actions and labelled metrics;
    records every on_update call in ``calls``."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.threshold = context.block_init_parameters.get("threshold", 0.5)
        self.health_mode = "ok"
        self.health_calls = 0
        self.health_running = 0  # health() calls that have not returned yet
        self.release = threading.Event()
        self.mgmt_release = threading.Event()
        self.mgmt_waiting = 0
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        m = context.metrics
        m.register_counter("jobs_total", "Jobs handled, by kind", ["kind"])
        m.register_gauge("last_value", "Last value seen, by kind", ["kind"])
        m.register_histogram("value_seen", "Values seen, by kind", ["kind"], buckets=[0.5, 1.0])

    def on_preprocess(self, packet: Any) -> Any:
        return True, [PreProcessResult(packet=packet, extra_data=json.loads(packet.data))]

    def on_data(self, entry: Any) -> Any:
        kind, value = entry.extra_data["kind"], entry.extra_data["value"]
        m = self.context.metrics
        m.increment_counter("jobs_total", labels={"kind": kind})
        m.set_gauge("last_value", value, labels={"kind": kind})
        m.observe_histogram("value_seen", value, labels={"kind": kind})
        return True, OnDataResult(output={"kind": kind, "passed": value > self.threshold})

    def on_update(self, updated: dict[str, Any]) -> tuple[bool, Any]:
        with self.lock:
            self.calls.append(dict(updated))
        if updated.get("explode"):
            raise RuntimeError("on_update exploded")
        if updated.get("opaque") == "dict":
            return True, {"model": object()}  # accepted, but no JSON can carry it back
        if updated.get("opaque") == "bare":
            return True, object()
        if "threshold" in updated:
            t = updated["threshold"]
            if isinstance(t, bool) or not isinstance(t, (int, float)):
                return False, "threshold must be a number"
            self.threshold = t
        return True, updated

    def health(self) -> Any:
        with self.lock:
            self.health_calls += 1
            self.health_running += 1
        try:
            return self._health()
        finally:
            with self.lock:
                self.health_running -= 1

    def _health(self) -> Any:
        if self.health_mode == "raise":
            raise RuntimeError("feeling sick")
        if self.health_mode == "object":
            return {"model": object()}
        if self.health_mode == "slow":
            self.release.wait(10)
        return {"status": "healthy", "threshold": self.threshold}

    def management(self, action: str, data: Any) -> Any:
        if action == "echo":
            return {"action": action, "data": data}
        if action == "fail":
            raise ValueError("cannot do that")
        if action == "get_threshold":
            return {"threshold": self.threshold}
        if action == "wait":  # a slow callback: blocks until the test releases it
            with self.lock:
                self.mgmt_waiting += 1
            released = self.mgmt_release.wait(30)
            with self.lock:
                self.mgmt_waiting -= 1
            return {"released": released}
        return {"message": f"Unknown action: {action}"}


class MgmtGate:
    """N concurrent ``/mgmt wait`` calls from threads; collects (status, body) of each."""

    def __init__(self, base: str, n: int) -> None:
        self.results: list[tuple[int, Any]] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._call, args=(base,)) for _ in range(n)]
        for t in self.threads:
            t.start()

    def _call(self, base: str) -> None:
        r = httpx.post(base + "/mgmt", json={"mgmt_action": "wait"}, timeout=30)
        with self._lock:
            self.results.append((r.status_code, r.json()))

    def done(self) -> int:
        with self._lock:
            return len(self.results)

    def join(self) -> None:
        for t in self.threads:
            t.join(30)
