"""``Runner``: the thread that runs ingest jobs, answering each on its caller's event loop.

One thread, not a pool: the pipeline runs one job at a time anyway (its lock), so more
threads would only queue on that lock, each paying a wake-up. Jobs run in arrival order.
Answers are coalesced per event loop: a finished job's result joins that loop's inbox, and
only the first result of an empty inbox wakes the loop (``call_soon_threadsafe``), which
then answers everything the inbox holds. Under load many answers share one wake-up; alone,
a job is answered as soon as it ends.

At most ``limit`` jobs are admitted (running or waiting); ``submit`` refuses more (the
caller answers 429). A job whose caller stopped waiting before it began is skipped.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Runner"]

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class _Inbox:
    """Results waiting to be set on one event loop."""

    def __init__(self) -> None:
        self.items: list[tuple[asyncio.Future[Any], bool, Any]] = []


class Runner:
    """Runs callables on one daemon thread; ``submit`` returns an awaitable future."""

    def __init__(self, name: str, limit: int) -> None:
        self.name, self.limit = name, limit
        self._cond = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._pending = 0  # admitted, not finished
        self._closed = False
        self._thread: threading.Thread | None = None
        self._inboxes: dict[asyncio.AbstractEventLoop, _Inbox] = {}
        self._inbox_lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs admitted and not finished (running or waiting)."""
        with self._cond:
            return self._pending

    def submit(self, fn: Callable[[], Any]) -> asyncio.Future[Any] | None:
        """Run ``fn`` on the runner's thread (call on an event loop); None when full or closed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._cond:
            if self._closed or self._pending >= self.limit:
                return None
            self._pending += 1
            self._jobs.append((loop, future, fn))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return future

    def close(self) -> None:
        """Stop once the jobs admitted are done; never waits (a job may hang)."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                loop, future, fn = self._jobs.popleft()
            if future.cancelled():  # its caller gave up before it began (a benign race)
                self._finished()
                continue
            try:
                ok, value = True, fn()
            except BaseException as exc:  # SystemExit too: it must not end this thread
                ok, value = False, exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
            self._finished()
            self._answer(loop, future, ok, value)

    def _finished(self) -> None:
        with self._cond:
            self._pending -= 1

    def _answer(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], ok: bool, value: Any
    ) -> None:
        with self._inbox_lock:
            inbox = self._inboxes.get(loop)
            wake = inbox is None
            if inbox is None:
                inbox = self._inboxes[loop] = _Inbox()
            inbox.items.append((future, ok, value))
        if wake:
            try:
                loop.call_soon_threadsafe(self._deliver, loop)
            except RuntimeError:  # the loop is closed: nobody waits for these answers
                with self._inbox_lock:
                    self._inboxes.pop(loop, None)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``: set every result its inbox holds."""
        with self._inbox_lock:
            inbox = self._inboxes.pop(loop, None)
        for future, ok, value in inbox.items if inbox is not None else ():
            if future.done():  # cancelled meanwhile (a timeout)
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
