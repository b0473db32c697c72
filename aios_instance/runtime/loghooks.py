"""The loop's log lines, as a hooks implementation (the worker logs nothing itself).

One WARNING per failed job (block, session:seq, outcome, reason; the traceback at DEBUG), so
a block that raises or refuses its input is visible in the server's output, as Celery and
Dramatiq show a failed task. A flood of bad input must not flood the log: at most
``burst`` failed-job lines per ``window_s``, then one line saying how many more there were.
Outages are logged once when they start and once when they end, not per retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .hooks import Batch, Hooks
from .outcome import PipelineResult

__all__ = ["LoggingHooks", "RateLimit"]

log = logging.getLogger("aios_instance.runtime.worker")


class RateLimit:
    """At most ``burst`` events per ``window_s``; counts what it held back."""

    def __init__(
        self, burst: int = 10, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self._window_start = -float("inf")
        self._used = 0
        self.suppressed = 0

    def allow(self) -> bool:
        """Whether this event may be logged now."""
        now = self.clock()
        if now - self._window_start >= self.window_s:
            self._window_start, self._used = now, 0
        if self._used < self.burst:
            self._used += 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        """How many were held back since the last call, once a new window allows logging."""
        if not self.suppressed or self.clock() - self._window_start < self.window_s:
            return 0
        count, self.suppressed = self.suppressed, 0
        return count


class LoggingHooks(Hooks):
    """Failed jobs (rate-limited), dead letters the runtime gave up on, outages."""

    def __init__(
        self,
        dead_letters: str = "the dead-letter list",
        *,
        block_id: str = "",
        limit: RateLimit | None = None,
    ) -> None:
        self.dead_letters = dead_letters
        self.block_id = block_id
        self.limit = limit or RateLimit()
        self._down: set[str] = set()  # endpoints whose outage was logged
        self._source_down = False

    def processed(self, batch: Batch, result: PipelineResult) -> None:
        """One WARNING per failed job (the traceback at DEBUG), within the rate limit."""
        if self.limit.suppressed:
            self._say_suppressed(self.limit.take_suppressed())
        for failure in result.failures:
            if not self.limit.allow():
                continue
            log.warning(
                "block %s: job %s:%d failed (%s): %s",
                self.block_id,
                failure.session_id or "-",
                failure.seq_no,
                failure.outcome.value,
                failure.reason,
            )
            if failure.traceback and log.isEnabledFor(logging.DEBUG):
                job = f"{failure.session_id}:{failure.seq_no}"
                log.debug("traceback of job %s:\n%s", job, failure.traceback)

    def dead_lettered(self, batch: Batch, reason: str, count: int, detail: str) -> None:
        """ERROR for what the runtime gave up on; the pipeline's failures were logged when
        they happened (``processed``)."""
        if reason in ("max_deliveries", "delivery_error"):
            where = self.dead_letters
            log.error("dead-lettered %d job(s) (%s) to %s: %s", count, reason, where, detail)

    def delivery_failed(self, endpoint: str, error: Exception, parked: int) -> None:
        """Once per outage (not per retry)."""
        if endpoint in self._down:
            return
        self._down.add(endpoint)
        log.warning("endpoint %s unreachable, %d outputs parked: %s", endpoint, parked, error)

    def delivery_recovered(self, endpoint: str) -> None:
        self._down.discard(endpoint)
        log.warning("endpoint %s reachable again", endpoint)

    def source_failed(self, error: Exception, *, retrying: bool = True) -> None:
        """One ERROR when the input Redis goes away (DEBUG while it stays away)."""
        if not retrying:
            log.error("could not finish the claimed packets at shutdown: %s", error)
        elif not self._source_down:
            self._source_down = True
            log.error("input redis unreachable, retrying every second: %s", error)
        else:
            log.debug("input redis still unreachable: %s", error)

    def source_recovered(self) -> None:
        if self._source_down:
            self._source_down = False
            log.info("input redis reachable again")

    def unfinished(self, deliveries: int) -> None:
        log.warning("%d deliveries unfinished at shutdown; their inputs are requeued", deliveries)

    def stopped(self) -> None:
        """At shutdown: say how many failed jobs the rate limit held back."""
        self._say_suppressed(self.limit.suppressed)
        self.limit.suppressed = 0

    def _say_suppressed(self, count: int) -> None:
        if count:
            log.warning(
                "block %s: %d more failed jobs were not logged (rate limit)", self.block_id, count
            )
