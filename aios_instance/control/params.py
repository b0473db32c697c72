"""The ``PARAMETER_UPDATES`` listener: parameter updates pushed to a Redis list.

Producers LPUSH JSON objects to ``PARAMETER_UPDATES`` on the instance's Redis; the listener
BRPOPs them (oldest first) on its own thread and connection, and applies each one exactly like
``POST /setParameters``: ``on_update`` decides, and ``context.block_init_parameters`` changes
only when it accepts. An item that is not a JSON object is logged and dead-lettered to
``{BLOCK_ID}_dead`` (outcome ``bad_input``, stage ``parameters``); a refused update is logged.
An update that ``on_update`` accepts with a value that is not JSON (`UpdateResultError`:
the parameters stay unchanged) is logged and dead-lettered too (outcome ``user_error``).
The listener depends on a ``ControlTarget`` (``target.py``), which applies the updates and
builds the dead-letter records.
The listener never dies: a Redis outage is logged and retried with backoff.

Delivery is at most once: an update popped by an instance that crashes before applying it is
lost. The list is shared by every consumer of that Redis, so each update reaches one instance.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis

from .. import _json, keys
from ..errors import ParameterLimitError, UpdateResultError
from ..transport.redis import connect
from .target import ControlTarget

__all__ = ["ParameterListener", "UpdateResultError"]

log = logging.getLogger(__name__)

_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class ParameterListener:
    """Consumes ``PARAMETER_UPDATES`` on a daemon thread: ``start()`` … ``stop()``."""

    def __init__(
        self,
        target: ControlTarget,
        *,
        poll_timeout_s: float = 1.0,
        retry_min_s: float = 0.1,
        retry_max_s: float = 5.0,
    ) -> None:
        self.target = target
        self.queue = keys.PARAMETER_UPDATES
        self.poll_timeout_s = poll_timeout_s
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.applied = self.refused = self.rejected = 0  # counts, for tests and /mgmt
        self._client = connect(target.settings.redis_url, socket_timeout_s=poll_timeout_s + 5.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aios-parameters", daemon=True)

    def start(self) -> ParameterListener:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Interrupt the current poll, join the thread and close the connection."""
        self._stop.set()
        if self._thread.is_alive():
            self._client.connection_pool.disconnect()  # shutdown() wakes a blocked BRPOP
            self._thread.join(timeout_s)
        self._client.close()

    def _loop(self) -> None:
        backoff = self.retry_min_s
        down = False  # an outage is logged once when it starts and once when it ends
        while not self._stop.is_set():
            try:
                item = self._client.brpop([self.queue], timeout=self.poll_timeout_s)
            except Exception as exc:
                if self._stop.is_set():
                    break  # stop() interrupted the poll
                if not isinstance(exc, _REDIS_ERRORS):
                    log.exception("%s: unexpected error; retry in %.1fs", self.queue, backoff)
                elif not down:
                    log.warning("%s: Redis unavailable (%s); retrying", self.queue, exc)
                else:
                    log.debug("%s: Redis still unavailable (%s)", self.queue, exc)
                down = down or isinstance(exc, _REDIS_ERRORS)
            else:
                backoff = self.retry_min_s
                if down:
                    down = False
                    log.info("%s: Redis reachable again", self.queue)
                if item is not None:
                    self.handle(item[1])
                continue
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.retry_max_s)

    def handle(self, item: bytes | str) -> bool:
        """Apply one raw item; True if on_update accepted it. Never raises."""
        raw = item.encode() if isinstance(item, str) else item
        try:
            update = _json.loads(raw)
        except ValueError as exc:
            self._reject(raw, f"parameter update is not valid JSON: {exc}")
            return False
        if not isinstance(update, dict):
            self._reject(
                raw, f"parameter update must be a JSON object, got {_json.type_name(update)}"
            )
            return False
        return self._apply(raw, update)

    def _apply(self, raw: bytes, update: dict[str, Any]) -> bool:
        try:
            ok, value = self.target.apply_parameters(update)
        except UpdateResultError as exc:
            self.refused += 1
            self._reject(raw, str(exc), outcome="user_error")
            return False
        except ParameterLimitError as exc:
            self.refused += 1
            self._reject(raw, str(exc))
            return False
        except Exception:
            log.exception("%s: applying an update failed", self.queue)
            self.refused += 1
            return False
        if ok:
            self.applied += 1
            log.info("parameters updated from %s: %s", self.queue, sorted(update))
        else:
            self.refused += 1
            log.warning("parameter update from %s refused by on_update: %s", self.queue, value)
        return bool(ok)

    def _reject(self, raw: bytes, reason: str, outcome: str = "bad_input") -> None:
        """Log and dead-letter an update (``bad_input``: the item itself is unusable)."""
        if outcome == "bad_input":
            self.rejected += 1
        dead = keys.dead_letters(self.target.settings.block_id)
        log.warning("%s: %s; dead-lettered to %s", self.queue, reason, dead)
        record = self.target.dead_letter(raw, outcome=outcome, stage="parameters", reason=reason)
        try:
            self._client.lpush(dead, record)
        except Exception as exc:
            log.warning("could not dead-letter a bad parameter update: %s", exc)
