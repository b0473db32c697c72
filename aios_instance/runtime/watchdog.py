"""The watchdog: user code that never returns must not hold an instance, or its packets.

The pipeline stamps a ``Running`` before each call of user code (``on_preprocess``,
``on_data``, ``on_data_batch``, a batch flush) and clears it after; the watchdog thread reads it.
A call past ``AIOS_JOB_TIMEOUT_S``, or a stop that has not finished by its drain deadline
(``AIOS_DRAIN_TIMEOUT_S`` after SIGTERM), is reported once to ``on_stuck``: the runtime then
gives the instance up (``block.Runtime._give_up``). A Python thread cannot be killed, so giving
up means: ``/live`` answers 503, the worker is fenced off the source (``Gate``), the stuck
packet is dead-lettered ``timeout``, every other packet held goes back to the input, and the
process exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

__all__ = ["EXIT_JOB_TIMEOUT", "Abandoned", "Call", "Fence", "Gate", "Running", "Stuck", "Watchdog"]

log = logging.getLogger(__name__)

EXIT_JOB_TIMEOUT = 3
"""The exit code of an instance that gave up on a job past ``AIOS_JOB_TIMEOUT_S``."""

Fence = Literal["fenced", "busy", "returned"]

_MAX_CHECK_S = 1.0  # the watchdog looks at least this often


Call = tuple[float, str, tuple[bytes, ...]]
"""A call of user code: when it began (time.monotonic()), its phase, the packets it is about
(none for a batch flush)."""


@dataclass(slots=True)
class Running:
    """The call of user code in progress: written by the pipeline's thread, read by the
    watchdog's. One tuple, so that one store publishes it whole."""

    call: Call | None = None


@dataclass(frozen=True, slots=True)
class Stuck:
    """What the watchdog found: a call past its time, or a stop past its deadline."""

    call: Call | None  # None: no user code was running (a stop past its deadline)
    running_s: float
    timed_out: bool  # True: a job past the job timeout; False: a stop past its deadline

    @property
    def phase(self) -> str:
        return self.call[1] if self.call else ""

    @property
    def raws(self) -> tuple[bytes, ...]:
        return self.call[2] if self.call else ()


class Abandoned(BaseException):
    """Raised in the worker's thread when it returns from user code after the instance was
    given up: its packets are no longer its own. A BaseException, so that user code catching
    Exception cannot swallow it."""


class Gate:
    """Serialises the worker's transport calls with a watchdog taking the source over.

    The worker enters the gate around each call on the source or the senders; ``close()``
    waits for the call in progress, then every later entry raises ``Abandoned``. User code
    runs outside the gate, so a watchdog never waits for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.closed = False

    def __enter__(self) -> None:
        self._lock.acquire()
        if self.closed:
            self._lock.release()
            raise Abandoned

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()

    def close(self, timeout_s: float, still: Callable[[], bool] = lambda: True) -> Fence:
        """Fence the worker off, once its transport call in progress ends, if ``still()``
        (asked with the gate held, so the worker cannot move on meanwhile). ``"busy"``: the
        call did not end within ``timeout_s`` (nothing is fenced: the caller must not touch
        the source); ``"returned"``: ``still()`` was False (nothing is fenced)."""
        if not self._lock.acquire(timeout=timeout_s):
            return "busy"
        try:
            if not still():
                return "returned"
            self.closed = True
            return "fenced"
        finally:
            self._lock.release()


class Watchdog:
    """A daemon thread that reports a stuck call, or an overrun stop, to ``on_stuck``, which
    returns whether it gave the instance up (then the watchdog ends)."""

    def __init__(
        self,
        running: Running,
        timeout_s: float,
        on_stuck: Callable[[Stuck], bool],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.running = running
        self.timeout_s = timeout_s  # 0: calls are not timed (a stop's deadline still is)
        self._on_stuck = on_stuck
        self._clock = clock
        self._deadline = 0.0  # a stop's deadline; 0.0: not stopping
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="aios-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        """The instance finished: nothing more to watch."""
        self._stopped = True
        self._wake.set()

    def stop_by(self, deadline: float) -> None:
        """A stop began: report an overrun when it has not finished by ``deadline``
        (monotonic seconds). Only sets values (safe from a signal handler)."""
        if not self._deadline:
            self._deadline = deadline
            self._wake.set()

    def check(self) -> Stuck | None:
        """What is stuck now, if anything."""
        call, now = self.running.call, self._clock()
        if call is not None and self.timeout_s and now - call[0] > self.timeout_s:
            return Stuck(call, now - call[0], timed_out=True)
        if self._deadline and now >= self._deadline:
            return Stuck(call, now - call[0] if call else 0.0, timed_out=False)
        return None

    def _run(self) -> None:
        while not self._stopped:
            stuck = self.check()
            if stuck is not None:
                try:
                    if self._on_stuck(stuck):
                        return
                except Exception:
                    log.exception("the watchdog could not give the instance up")
                    return
            self._wake.wait(self._interval_s())
            self._wake.clear()

    def _interval_s(self) -> float:
        """How long until the next look: a tenth of the timeout, at most a second; and not
        past the stop's deadline."""
        wait = _MAX_CHECK_S if not self.timeout_s else min(self.timeout_s / 10, _MAX_CHECK_S)
        if self._deadline:
            wait = min(wait, max(self._deadline - self._clock(), 0.0) + 0.01)
        return max(wait, 0.01)
