"""`Batcher` and `TimeBasedBatcher`: group items N at a time (the spec's batchers).

Both are re-exported from `aios_instance.tools`, where the spec imports them from.

- ``TimeBasedBatcher`` flushes on count or age; ``next_deadline()``/``poll()`` let the runtime
  flush a due batch when no new packet arrives. A batcher that starts holding a batch while the
  runtime runs the block's code on this thread is claimed by that runtime (``_batch_claims``;
  see ``aios_instance/runtime/batching.py``), so a due batch is flushed wherever the block keeps
  its batcher: to ``flush_callback`` (the existing SDK's argument), else the block's
  ``on_batch_timeout``, else as the spec's ``{"batch": [...]}`` output (docs/tools.md).
- Every class is thread-safe behind one lock, held only for the bookkeeping.

Clocks are injectable (``clock=``) and must not go backwards; the default is
``time.monotonic``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Batcher", "TimeBasedBatcher"]

Clock = Callable[[], float]


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _check_seconds(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")


class _BatchBuffer:
    """What both batchers share: a lock, the held items and flush()."""

    def __init__(self, N: int) -> None:
        _check_count("N", N)
        self.N = N
        self._lock = threading.Lock()
        self._items: list[Any] = []

    def _take(self) -> list[Any]:
        # Caller holds the lock. Hand over the list itself and start a fresh one (no copy).
        items, self._items = self._items, []
        return items

    def flush(self) -> list[Any]:
        """Return and clear whatever is held (an empty list when nothing is)."""
        with self._lock:
            return self._take()

    @property
    def pending(self) -> tuple[Any, ...]:
        """A snapshot of the items held, oldest first."""
        with self._lock:
            return tuple(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class Batcher(_BatchBuffer):
    """Collect items and emit them N at a time."""

    def add_to_batch(self, packet: Any) -> list[Any] | None:
        """Add an item; return the batch of N when it is full, else None."""
        with self._lock:
            self._items.append(packet)
            return self._take() if len(self._items) >= self.N else None


class _BatchClaims(threading.local):
    """Per thread: who claims a TimeBasedBatcher that starts holding a batch on this thread.

    The runtime's pipeline sets ``claim`` while it runs the block's callbacks and resets it
    after; outside them (and without a runtime) it is None and nobody is told.
    """

    claim: Callable[[TimeBasedBatcher], None] | None = None


_batch_claims = _BatchClaims()


class TimeBasedBatcher(_BatchBuffer):
    """Collect items; emit when N are held or T seconds after the batch's first item.

    A batch that falls due with no new item is flushed by the runtime: to ``flush_callback``
    (the existing SDK's argument), else the block's ``on_batch_timeout``, else as the spec's
    ``{"batch": [...]}`` output (see docs/tools.md).
    """

    def __init__(
        self,
        N: int,
        T: float,
        flush_callback: Callable[[list[Any]], Any] | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(N)
        _check_seconds("T", T)
        if flush_callback is not None and not callable(flush_callback):
            raise TypeError(f"flush_callback must be callable, got {flush_callback!r}")
        self.T = float(T)
        self.flush_callback = flush_callback
        self._clock = clock
        # When the current batch is due: its first item's time + T. Compared as stored so
        # that poll(next_deadline()) always flushes (now - start >= T can differ in floats).
        self._due = 0.0

    def add_to_batch(self, packet: Any) -> list[Any] | None:
        """Add an item; return the batch (including it) when full or due, else None."""
        with self._lock:
            now = self._clock()
            if not self._items:
                self._due = now + self.T
            self._items.append(packet)
            if len(self._items) >= self.N or now >= self._due:
                return self._take()
            started = len(self._items) == 1
        claim = _batch_claims.claim if started else None
        if claim is not None:
            claim(self)  # a new batch is held: the runtime running this code must flush it
        return None

    def next_deadline(self) -> float | None:
        """Clock time at which the current batch becomes due; None when nothing is held."""
        with self._lock:
            return self._due if self._items else None

    def poll(self, now: float | None = None) -> list[Any] | None:
        """Return and clear the batch if it is due, else None (call it at ``next_deadline``)."""
        with self._lock:
            if not self._items:
                return None
            now = self._clock() if now is None else now
            return self._take() if now >= self._due else None
