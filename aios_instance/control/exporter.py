"""The Redis snapshot exporter: a thread that LPUSHes the block's metrics to ``NODE_METRICS``.

It takes a snapshot callable: the runtime passes one returning ``AIOSMetrics.snapshot()`` with
the hardware section (the existing JSON shape), so the exporter knows nothing of where the
numbers come from. The list is trimmed to the newest ``max_len`` snapshots
(``NODE_METRICS_MAX_LEN`` by default), so it stays bounded when no one consumes it. The thread
never dies on an exception.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from .. import _json, keys

__all__ = ["NODE_METRICS_MAX_LEN", "MetricsExporter"]

log = logging.getLogger(__name__)

NODE_METRICS_MAX_LEN = 1000
"""How many snapshots the exporter keeps in ``NODE_METRICS`` by default (LTRIM after LPUSH)."""


class MetricsExporter:
    """A daemon thread that LPUSHes a JSON snapshot to ``queue`` every ``interval_s``.

    It never dies: every failure is logged (once per outage at WARNING) and counted in
    ``failures``; after a connection error the client is dropped and made anew next time.
    """

    def __init__(
        self,
        snapshot: Callable[[], Mapping[str, Any]],
        redis_client_factory: Callable[[], redis.Redis],
        interval_s: float = 10.0,
        queue: str = keys.NODE_METRICS,
        max_len: int | None = NODE_METRICS_MAX_LEN,
    ) -> None:
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be at least 1 (or None: unbounded), got {max_len}")
        self.snapshot = snapshot
        self.interval_s = interval_s
        self.queue = queue
        self.max_len = max_len
        self.pushes = 0
        self.failures = 0
        self._factory = redis_client_factory
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def alive(self) -> bool:
        """True while the export thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> MetricsExporter:
        """Start the export thread (no-op if it already runs)."""
        if not self.alive:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="aios-metrics-exporter", daemon=True
            )
            self._thread.start()
            log.info("metrics exporter started: %s every %.1fs", self.queue, self.interval_s)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Wake the thread, wait up to ``timeout_s`` for it, close the client."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            try:
                self._drop_client()
            finally:
                self._lock.release()
        log.info(
            "metrics exporter stopped after %d pushes, %d failures", self.pushes, self.failures
        )

    def _run(self) -> None:
        self._prime()
        while not self._stop.wait(self.interval_s):
            try:
                self.push_once()
            except Exception:  # pragma: no cover - push_once already catches everything
                log.exception("metrics exporter: unexpected error")

    def push_once(self) -> bool:
        """Push one snapshot now; True on success, False (logged, counted) on failure."""
        with self._lock:
            try:
                self._push(_json.dumps_bytes(self.snapshot()))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self._drop_client()
                return self._failed("cannot reach Redis: %s", exc)
            except Exception as exc:
                return self._failed("push failed: %r", exc)
            self.pushes += 1
            if self._failing:
                self._failing = False
                log.info("metrics exporter: pushing to %s again", self.queue)
            return True

    def _push(self, payload: bytes) -> None:
        if self._client is None:
            self._client = self._factory()
        if self.max_len is None:
            self._client.lpush(self.queue, payload)
            return
        pipe = self._client.pipeline(transaction=False)
        pipe.lpush(self.queue, payload)
        pipe.ltrim(self.queue, 0, self.max_len - 1)
        pipe.execute()

    def _prime(self) -> None:
        """One snapshot, thrown away: the first reading of psutil's ``cpu_percent`` (and NVML's
        start) happens here, on the export thread, and the first pushed one is meaningful."""
        try:
            self.snapshot()
        except Exception as exc:
            log.debug("metrics exporter: snapshot failed: %r", exc)

    def _failed(self, message: str, exc: BaseException) -> bool:
        """Count and log a failure (WARNING once per outage, then DEBUG); returns False."""
        self.failures += 1
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        log.log(level, "metrics exporter: " + message, exc)
        return False

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # closing a broken client must not break the loop
                log.debug("metrics exporter: closing client failed: %r", exc)
