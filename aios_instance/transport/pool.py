"""One sink per endpoint, created on first use and reused: no per-packet connection setup."""

from __future__ import annotations

import threading
from typing import Any

from ..routing import Destination
from .grpc import GrpcSink
from .redis import RedisSink, connect, redis_url_of

__all__ = ["SinkPool"]


class SinkPool:
    """Maps a destination to the pooled sink of its endpoint (Redis server or gRPC target)."""

    def __init__(self, *, socket_timeout_s: float = 5.0) -> None:
        self._sinks: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        self._socket_timeout_s = socket_timeout_s

    def __call__(self, dest: Destination) -> Any:
        """The sink for ``dest``'s endpoint."""
        key = (dest.kind, dest.host, dest.port, dest.db, dest.password)
        sink = self._sinks.get(key)
        if sink is None:
            with self._lock:
                sink = self._sinks.get(key)
                if sink is None:
                    sink = self._sinks[key] = self._make(dest)
        return sink

    def _make(self, dest: Destination) -> Any:
        if dest.kind == "grpc":
            return GrpcSink(dest.host)
        return RedisSink(connect(redis_url_of(dest), socket_timeout_s=self._socket_timeout_s))

    def close(self) -> None:
        """Close every sink."""
        with self._lock:
            sinks, self._sinks = list(self._sinks.values()), {}
        for sink in sinks:
            sink.close()
