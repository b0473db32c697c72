"""Senders: the pushes to one endpoint run on a thread of their own, one at a time.

The worker hands a push to the endpoint's ``Sender`` and waits for it only briefly (see
``outbox.Outbox``): an endpoint that accepts connections and never answers, or one whose
connect times out, then holds up only the outputs routed to it, never the worker's loop.
One push at a time per endpoint keeps the endpoint's outputs in order.

``Senders`` keeps at most ``max_endpoints`` of them (producers choose endpoints through
``output_ptr``); a sender's thread ends after ``idle_s`` without work and starts again on the
next push.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["Sender", "Senders"]

_Job = tuple[Future[Any], Callable[[], Any]]


class Sender:
    """Runs one endpoint's pushes in order on a daemon thread started on demand.

    Not ``ThreadPoolExecutor``: its threads are joined at interpreter exit, so one push stuck
    on a silent endpoint would hold the process's exit.
    """

    def __init__(self, name: str, idle_s: float = 5.0) -> None:
        self.name = name
        self.idle_s = idle_s
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` after the pushes already submitted; its future."""
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                future.set_exception(RuntimeError(f"sender {self.name} is closed"))
                return future
            self._jobs.put((future, fn))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"aios-send-{self.name}", daemon=True
                )
                self._thread.start()
        return future

    def close(self) -> None:
        """Refuse new pushes; the thread ends after the one in progress (never waited for)."""
        with self._lock:
            self._closed = True
            if self._thread is not None:
                self._jobs.put(None)

    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:  # submit() checks the thread under the same lock
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            if job is None:
                return
            future, fn = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # reported to the worker through the future
                future.set_exception(exc)


class Senders:
    """One ``Sender`` per endpoint, at most ``max_endpoints`` (idle ones make room)."""

    def __init__(self, max_endpoints: int = 64, idle_s: float = 2.0) -> None:
        self.max_endpoints = max_endpoints
        self.idle_s = idle_s
        self._senders: dict[str, Sender] = {}

    def __len__(self) -> int:
        return len(self._senders)

    def get(self, endpoint: str, busy: Callable[[str], bool]) -> Sender | None:
        """The sender of ``endpoint``; None when every place is taken by an endpoint that
        ``busy`` says has a push in progress (try again later)."""
        sender = self._senders.get(endpoint)
        if sender is not None:
            return sender
        if len(self._senders) >= self.max_endpoints:
            for name in [n for n in self._senders if not busy(n)]:
                self._senders.pop(name).close()
            if len(self._senders) >= self.max_endpoints:
                return None
        sender = self._senders[endpoint] = Sender(endpoint, self.idle_s)
        return sender

    def close(self) -> None:
        """Close every sender (their threads end; pushes in progress are not waited for)."""
        senders, self._senders = list(self._senders.values()), {}
        for sender in senders:
            sender.close()
