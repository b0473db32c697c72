"""Connection bounds shared by the control API and the metrics server.

``ConnectionBounds`` says how long a client may take to send a request, how long a kept-alive
connection may sit idle and how many connections may be open; ``Connections`` enforces the
count for one server and counts what it closes and refuses in the ``aios_control_*`` series
(see docs/metrics.md). Both servers are reachable from the network and serve one thread or
one event loop per process, so a client that connects and sends nothing must not hold a
slot for ever.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CLOSE_REASONS", "ConnectionBounds", "Connections", "Registrar"]

#: Why a server closed a connection it had accepted: no complete request within the header
#: timeout, or kept alive with nothing to do for the idle timeout.
CLOSE_REASONS = ("header_timeout", "idle_timeout")


@dataclass(frozen=True)
class ConnectionBounds:
    """The limits of one server; the defaults are the settings' defaults
    (``AIOS_CONTROL_IDLE_TIMEOUT_S``, ``AIOS_CONTROL_HEADER_TIMEOUT_S``,
    ``AIOS_CONTROL_MAX_CONNECTIONS``)."""

    idle_timeout_s: float = 15.0
    header_timeout_s: float = 10.0
    max_connections: int = 128

    @classmethod
    def from_settings(cls, settings: Any) -> ConnectionBounds:
        """The bounds a ``Settings`` asks for (duck-typed: this module imports no settings)."""
        return cls(
            idle_timeout_s=settings.control_idle_timeout_s,
            header_timeout_s=settings.control_header_timeout_s,
            max_connections=settings.control_max_connections,
        )


class Registrar(Protocol):
    """What ``Connections`` needs of an ``AIOSMetrics`` (a Protocol: no import circle)."""

    def register_gauge(
        self, name: str, documentation: str, labelnames: Sequence[str] | None = None
    ) -> Any: ...

    def register_counter(
        self, name: str, documentation: str, labelnames: Sequence[str] | None = None
    ) -> Any: ...


class Connections:
    """The open connections of one server (``server`` label: ``api`` or ``metrics``), at most
    ``limit``; thread-safe (the metrics server admits from its accept thread and releases
    from a handler thread)."""

    def __init__(self, limit: int, metrics: Registrar, server: str) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open = 0
        gauge = metrics.register_gauge(
            "aios_control_connections",
            "Open connections to the control API (server=api) or the metrics server",
            ["server"],
        )
        closed = metrics.register_counter(
            "aios_control_connections_closed_total",
            "Connections the server closed: no complete request in time, or idle",
            ["server", "reason"],
        )
        refused = metrics.register_counter(
            "aios_control_connections_refused_total",
            "Connections closed on accept: the server held its maximum already",
            ["server"],
        )
        self._gauge = gauge.labels(server=server)
        self._closed = {r: closed.labels(server=server, reason=r) for r in CLOSE_REASONS}
        self._refused = refused.labels(server=server)

    @property
    def open(self) -> int:
        """Connections admitted and not yet released."""
        return self._open

    def admit(self) -> bool:
        """Count a new connection in; False (counted as refused) when ``limit`` are open."""
        with self._lock:
            if self._open >= self.limit:
                self._refused.inc()
                return False
            self._open += 1
            self._gauge.inc()
            return True

    def release(self) -> None:
        """An admitted connection ended (call once per admitted connection)."""
        with self._lock:
            self._open -= 1
            self._gauge.dec()

    def timed_out(self, reason: str) -> None:
        """Count a connection the server closes for ``reason`` (one of ``CLOSE_REASONS``)."""
        self._closed[reason].inc()
