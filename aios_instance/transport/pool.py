"""One sink per endpoint, created on first use and reused: no per-packet connection setup.

Endpoints come from producers (``output_ptr``), so the pool is bounded: at most
``max_sinks`` endpoints, and a sink unused for ``idle_s`` is closed when a new endpoint
needs a place (least recently used first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..routing import Destination
from .grpc import GrpcSink
from .redis import RedisSink, connect, redis_url_of

__all__ = ["SinkPool"]


class SinkPool:
    """Maps a destination to the pooled sink of its endpoint (Redis server or gRPC target)."""

    def __init__(
        self,
        *,
        socket_timeout_s: float = 5.0,
        max_sinks: int = 256,
        idle_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sinks: OrderedDict[tuple[Any, ...], tuple[Any, float]] = OrderedDict()
        self._used: dict[tuple[Any, ...], float] = {}  # last use, stamped without the lock
        self._lock = threading.Lock()
        self._socket_timeout_s = socket_timeout_s
        self.max_sinks = max_sinks
        self.idle_s = idle_s
        self._clock = clock

    def __call__(self, dest: Destination) -> Any:
        """The sink for ``dest``'s endpoint."""
        key = (dest.kind, dest.host, dest.port, dest.db, dest.password)
        entry = self._sinks.get(key)  # the hot path: one lookup, no lock
        if entry is not None:
            self._used[key] = self._clock()
            return entry[0]
        now = self._clock()
        with self._lock:
            entry = self._sinks.get(key)
            if entry is not None:
                return entry[0]
            closing = self._make_room(now)
            sink = self._make(dest)
            self._sinks[key] = (sink, now)
        for old in closing:
            old.close()
        return sink

    def __len__(self) -> int:
        return len(self._sinks)

    def _make_room(self, now: float) -> list[Any]:
        """Only when a new endpoint comes: take out the sinks idle too long, and the least
        recently used past the bound."""
        last_use = {key: self._used.get(key, made) for key, (_, made) in self._sinks.items()}
        closing = []
        for key in sorted(last_use, key=last_use.__getitem__):
            idle = now - last_use[key] >= self.idle_s
            if not idle and len(self._sinks) < self.max_sinks:
                break
            closing.append(self._sinks.pop(key)[0])
            self._used.pop(key, None)
        return closing

    def _make(self, dest: Destination) -> Any:
        if dest.kind == "grpc":
            return GrpcSink(dest.host)
        return RedisSink(connect(redis_url_of(dest), socket_timeout_s=self._socket_timeout_s))

    def close(self) -> None:
        """Close every sink."""
        with self._lock:
            sinks, self._sinks = [s for s, _ in self._sinks.values()], OrderedDict()
            self._used.clear()
        for sink in sinks:
            sink.close()
