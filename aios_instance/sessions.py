"""`SessionsManager`: per-session data a block keeps across jobs (``context.sessions``).

A session is a plain ``dict`` keyed by the packet's ``session_id``. The manager is a
thread-safe, in-process store; with ``idle_ttl_s`` set, a session that has not been used
(created, read with :meth:`SessionsManager.get_session` or updated) for longer than that is
dropped. Expiry runs lazily on every access and can also be driven from outside with
:meth:`SessionsManager.expire` (the runtime calls it periodically).

:meth:`SessionsManager.get_session` returns the stored dict itself, not a copy, so a block can
keep mutable per-session objects in it. Use :meth:`SessionsManager.update_session` when
several threads change the same session: it merges under the manager's lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

__all__ = ["SessionData", "SessionsManager"]

SessionData = dict[str, Any]
_T = TypeVar("_T")


class SessionsManager:
    """Thread-safe store of per-session dicts, optionally expiring idle sessions."""

    def __init__(
        self, idle_ttl_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if idle_ttl_s is not None and idle_ttl_s <= 0:
            raise ValueError(f"idle_ttl_s must be positive or None, got {idle_ttl_s!r}")
        self.idle_ttl_s = idle_ttl_s
        self._clock = clock
        self._lock = threading.RLock()
        # Least recently used first, so expiry only looks at the front.
        self._sessions: OrderedDict[str, SessionData] = OrderedDict()
        self._last_used: dict[str, float] = {}

    # -- the spec's API --------------------------------------------------------------------
    def create_session(self, session_id: str, data: Mapping[str, Any] | None = None) -> SessionData:
        """Create (or reset) a session holding a shallow copy of ``data``; returns its dict."""
        with self._lock:
            now = self._sweep()
            session: SessionData = dict(data) if data is not None else {}
            self._sessions[session_id] = session
            self._touch(session_id, now)
            return session

    @overload
    def get_session(self, session_id: str) -> SessionData | None: ...

    @overload
    def get_session(self, session_id: str, default: _T) -> SessionData | _T: ...

    def get_session(self, session_id: str, default: Any = None) -> Any:
        """The session's dict (marking it used), or ``default`` when there is none."""
        with self._lock:
            now = self._sweep()
            session = self._sessions.get(session_id)
            if session is None:
                return default
            self._touch(session_id, now)
            return session

    def update_session(self, session_id: str, data: Mapping[str, Any]) -> SessionData:
        """Merge ``data`` into the session (creating it when absent); returns its dict."""
        with self._lock:
            now = self._sweep()
            session = self._sessions.get(session_id)
            if session is None:
                session = self._sessions[session_id] = {}
            session.update(data)
            self._touch(session_id, now)
            return session

    def remove_session(self, session_id: str) -> bool:
        """Drop a session; returns whether it existed."""
        with self._lock:
            self._sweep()
            return self._drop(session_id)

    # -- the existing SDK's names -----------------------------------------------------------
    def get_session_data(self, session_id: str, default: Any = None) -> Any:
        """The existing SDK's name for `get_session`: the session's dict, or ``default``."""
        return self.get_session(session_id, default)

    def update_session_object(self, session_id: str, data: Mapping[str, Any]) -> SessionData:
        """The existing SDK's name for `update_session`: merge ``data`` into the session."""
        return self.update_session(session_id, data)

    def remove_sessions_data(self, session_ids: str | Iterable[str]) -> int:
        """Drop one session (a str) or several (an iterable of ids); returns how many existed."""
        ids = [session_ids] if isinstance(session_ids, str) else list(session_ids)
        with self._lock:
            self._sweep()
            return sum(self._drop(session_id) for session_id in ids)

    def clear(self) -> None:
        """Drop every session."""
        with self._lock:
            self._sessions.clear()
            self._last_used.clear()

    def has_session(self, session_id: str) -> bool:
        """Whether the session exists (does not count as using it)."""
        with self._lock:
            self._sweep()
            return session_id in self._sessions

    def session_ids(self) -> list[str]:
        """The ids of all live sessions, least recently used first."""
        with self._lock:
            self._sweep()
            return list(self._sessions)

    def expire(self, now: float | None = None) -> list[str]:
        """Drop sessions idle longer than ``idle_ttl_s``; returns the ids dropped."""
        with self._lock:
            return self._expire(self._clock() if now is None else now)

    def __len__(self) -> int:
        with self._lock:
            self._sweep()
            return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, str) and self.has_session(session_id)

    def __repr__(self) -> str:
        return f"SessionsManager(sessions={len(self)}, idle_ttl_s={self.idle_ttl_s!r})"

    # -- internals (called with the lock held) ---------------------------------------------
    def _sweep(self) -> float:
        now = self._clock()
        self._expire(now)
        return now

    def _expire(self, now: float) -> list[str]:
        if self.idle_ttl_s is None:
            return []
        cutoff = now - self.idle_ttl_s
        expired: list[str] = []
        while self._sessions:
            oldest = next(iter(self._sessions))
            if self._last_used[oldest] >= cutoff:
                break
            self._drop(oldest)
            expired.append(oldest)
        return expired

    def _touch(self, session_id: str, now: float) -> None:
        self._last_used[session_id] = now
        self._sessions.move_to_end(session_id)

    def _drop(self, session_id: str) -> bool:
        self._last_used.pop(session_id, None)
        return self._sessions.pop(session_id, None) is not None
