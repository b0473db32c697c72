"""`BlockEvents`: structured runtime events a block emits (``context.events``).

Each event is the JSON object ``{"event_name", "block_id", "event_data"}`` RPUSHed onto the
events list (``EVENTS_QUEUE`` by default) of the events Redis, where the cluster controller's
block-events handler consumes it.

Without a Redis (``BlockEvents()``, as in unit tests) events are kept in memory instead: the
bounded deque ``recorded`` holds the last 10,000 events as the dicts a consumer would decode,
so tests can assert on them. Event data is JSON-encoded in both modes, so a test catches data
that production could not send.

``push_event`` never raises into block code: an event that cannot be encoded or sent is
logged, counted in ``failed`` and reported by returning ``False``. The client is created on
the first push and reused; it does not retry or back off on its own. After a failed send,
pushes within ``retry_after_s`` fail at once instead of waiting on a dead server again, so an
events outage costs the pipeline at most one timeout per ``retry_after_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import _json
from ._urls import location
from .keys import EVENTS_QUEUE
from .settings import Settings

__all__ = ["RECORDED_MAX", "BlockEvents"]

log = logging.getLogger(__name__)

RECORDED_MAX = 10_000
"""How many events an in-memory `BlockEvents` keeps in ``recorded``."""

_SEND_ERRORS = (redis.RedisError, OSError, ValueError)  # ValueError: a malformed URL


class BlockEvents:
    """Pushes block events to a Redis list, or records them in memory without Redis."""

    def __init__(
        self,
        block_id: str | None = None,
        redis_url: str | None = None,
        queue: str = EVENTS_QUEUE,
        *,
        redis: Redis | None = None,
        timeout_s: float = 2.0,
        retry_after_s: float = 1.0,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        if block_id is None:
            # Standalone, as the spec builds it (BlockEvents()): BLOCK_ID and (unless a Redis
            # is given) BLOCK_EVENTS_REDIS_URL from the environment; unset: in memory.
            settings = Settings.from_env()
            block_id = settings.block_id if settings.block_id_configured else ""
            if redis_url is None and redis is None:
                redis_url = settings.events_redis_url
        self.block_id = block_id
        self.queue = queue
        self.redis_url = redis_url or None
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.on_failure = on_failure
        self.recorded: deque[dict[str, Any]] = deque(maxlen=RECORDED_MAX)
        self.pushed = 0
        self.failed = 0
        self._client = redis
        self._owns_client = False
        self._lock = threading.Lock()
        self._healthy = True
        self._down_until = 0.0

    @property
    def in_memory(self) -> bool:
        """Whether events are recorded in memory because no Redis is configured."""
        return self._client is None and self.redis_url is None

    def push_event(self, event_name: str, event_data: Any = None) -> bool:
        """Emit one event; returns False (logged and counted, never raised) on failure."""
        event = {"event_name": event_name, "block_id": self.block_id, "event_data": event_data}
        try:
            payload = _json.dumps_bytes(event)
        except (TypeError, ValueError) as exc:
            log.error("event %r not sent: its data is not JSON-serializable (%s)", event_name, exc)
            self._failed()
            return False
        if self.in_memory:
            with self._lock:
                self.recorded.append(_json.loads(payload))
                self.pushed += 1
            return True
        return self._send(event_name, payload)

    def close(self) -> None:
        """Close the Redis client if this object created it."""
        with self._lock:
            client, self._client = self._client, (None if self._owns_client else self._client)
            owned, self._owns_client = self._owns_client, False
        if owned and client is not None:
            client.close()

    def __repr__(self) -> str:
        target = "memory" if self.in_memory else self.queue
        return f"BlockEvents(block_id={self.block_id!r}, to={target!r}, pushed={self.pushed})"

    # -- internals -------------------------------------------------------------------------
    def _send(self, event_name: str, payload: bytes) -> bool:
        if time.monotonic() < self._down_until:
            log.debug(
                "event %r dropped: events Redis failed < %ss ago", event_name, self.retry_after_s
            )
            self._failed()
            return False
        try:
            self._redis().rpush(self.queue, payload)
        except _SEND_ERRORS as exc:
            self._send_failed(event_name, exc)
            return False
        with self._lock:
            self.pushed += 1
            recovered, self._healthy = not self._healthy, True
        if recovered:
            log.info("events Redis reachable again; pushing to %r", self.queue)
        return True

    def _send_failed(self, event_name: str, exc: Exception) -> None:
        with self._lock:
            first, self._healthy = self._healthy, False
            self._down_until = time.monotonic() + self.retry_after_s
        level = logging.WARNING if first else logging.DEBUG
        log.log(level, "event %r not sent to %r: %s", event_name, self.queue, exc)
        self._failed()

    def _failed(self) -> None:
        with self._lock:
            self.failed += 1
        if self.on_failure is not None:
            try:
                self.on_failure()
            except Exception:
                log.exception("on_failure hook of BlockEvents raised")

    def _redis(self) -> Redis:
        with self._lock:
            if self._client is None:
                assert self.redis_url is not None
                self._client = Redis.from_url(
                    self.redis_url,
                    protocol=2,
                    decode_responses=False,
                    socket_connect_timeout=self.timeout_s,
                    socket_timeout=self.timeout_s,
                    retry=Retry(NoBackoff(), 0),
                )
                self._owns_client = True
                log.info("events go to %r on %s", self.queue, location(self.redis_url))
            return self._client
