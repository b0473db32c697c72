"""Streams: where ``context.write_ws(session_id, message)`` goes.

A ``StreamHub`` maps session ids to the ``Subscriber``s streaming them (a WebSocket
connection, a ``POST /infer?stream=true`` request). ``write`` is called on whichever thread
runs user code; it encodes the message once and offers it to each subscriber without ever
blocking. A subscriber is a bounded queue (by entries and by bytes) drained on its event loop;
one that fills (a client that reads too slowly, or not at all) is marked overflowed and takes
no more, and its reader ends the stream with an error: the block is never slowed down and
memory never grows past the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Any

from .. import _json
from .metrics import IngestMetrics

__all__ = ["MAX_QUEUED_BYTES", "MAX_QUEUED_MESSAGES", "StreamHub", "Subscriber"]

MAX_QUEUED_MESSAGES = 1024  # per subscriber: messages written, not yet sent to the client
MAX_QUEUED_BYTES = 4 << 20  # per subscriber: their bytes
MAX_SESSIONS_PER_SUBSCRIBER = 256  # sessions one WebSocket connection may stream


class Subscriber:
    """One client's stream: filled from any thread, drained on ``loop``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_messages: int = MAX_QUEUED_MESSAGES,
        max_bytes: int = MAX_QUEUED_BYTES,
    ) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: deque[bytes] = deque()
        self._bytes = 0
        self._max_messages, self._max_bytes = max_messages, max_bytes
        self._ready = asyncio.Event()  # touched on the loop only
        self.overflowed = False
        self.closed = False
        self.sessions: set[str] = set()

    def offer(self, data: bytes) -> bool:
        """Queue ``data`` (any thread); False when closed or full (then overflowed)."""
        with self._lock:
            if self.closed or self.overflowed:
                return False
            if len(self._items) >= self._max_messages or self._bytes + len(data) > self._max_bytes:
                self.overflowed = True
                wake = True
            else:
                self._items.append(data)
                self._bytes += len(data)
                wake = len(self._items) == 1
        if wake:
            self._wake()
        return not self.overflowed

    def close(self) -> None:
        """No more messages (any thread); wakes the reader."""
        with self._lock:
            self.closed = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads any more
            self._loop.call_soon_threadsafe(self._ready.set)

    async def get(self) -> list[bytes]:
        """The messages queued so far, waiting for at least one; [] once closed or
        overflowed and empty (``overflowed`` says which)."""
        while True:
            with self._lock:
                if self._items:
                    items = list(self._items)
                    self._items.clear()
                    self._bytes = 0
                    self._ready.clear()
                    return items
                if self.closed or self.overflowed:
                    return []
                self._ready.clear()
            await self._ready.wait()

    def pending(self) -> int:
        with self._lock:
            return len(self._items)


class StreamHub:
    """Session id → the subscribers streaming it; ``write`` is ``context.write_ws``."""

    def __init__(self, metrics: IngestMetrics | None = None) -> None:
        self._lock = threading.Lock()
        self._by_session: dict[str, tuple[Subscriber, ...]] = {}
        self._metrics = metrics

    def subscribe(self, session_id: str, subscriber: Subscriber) -> bool:
        """Stream ``session_id`` to ``subscriber``; False past its session bound."""
        with self._lock:
            if session_id in subscriber.sessions:
                return True
            if len(subscriber.sessions) >= MAX_SESSIONS_PER_SUBSCRIBER:
                return False
            subscriber.sessions.add(session_id)
            self._by_session[session_id] = (*self._by_session.get(session_id, ()), subscriber)
        return True

    def unsubscribe(self, subscriber: Subscriber, session_id: str | None = None) -> None:
        """Stop streaming ``session_id`` (None: every session) to ``subscriber``."""
        with self._lock:
            sessions = [session_id] if session_id is not None else list(subscriber.sessions)
            for sid in sessions:
                subscriber.sessions.discard(sid)
                left = tuple(s for s in self._by_session.get(sid, ()) if s is not subscriber)
                if left:
                    self._by_session[sid] = left
                else:
                    self._by_session.pop(sid, None)

    def write(self, session_id: str, message: Any) -> bool:
        """Offer ``message`` to every subscriber of ``session_id``; never blocks. Raises
        TypeError/ValueError when it is not JSON (a bug in the block, reported to it)."""
        subscribers = self._by_session.get(session_id)
        data = _json.dumps_bytes(message)
        if not subscribers:
            if self._metrics is not None:
                self._metrics.dropped("no_client")
            return False
        taken = False
        for subscriber in subscribers:
            if subscriber.offer(data):
                taken = True
            elif self._metrics is not None:
                self._metrics.dropped("queue_full")
        return taken

    def sessions(self) -> int:
        with self._lock:
            return len(self._by_session)
