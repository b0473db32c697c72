"""The lease keeper: renews this instance's lease every TTL/3 and requeues the packets of
instances whose lease lapsed every TTL, on its own thread (and its own connection) so user
code never delays a renewal. ``renewed_at`` tells readiness whether the input Redis answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..transport.base import Lease

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)


def _nothing() -> None:
    """The default ``on_renewed``."""


class LeaseKeeper:
    """Keeps a ``Lease`` alive from ``start()`` to ``stop()``."""

    def __init__(
        self, lease: Lease, ttl_s: float, *, on_renewed: Callable[[], None] = _nothing
    ) -> None:
        self.lease = lease
        self.ttl_s = ttl_s
        self.on_renewed = on_renewed  # e.g. sampling the autoscaling gauges
        self.renewed_at: float | None = None  # time.monotonic() of the last renewal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aios-lease", daemon=True)

    def start(self) -> None:
        """Start renewing (the source took the lease when it started)."""
        self.renewed_at = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing; the lease lapses unless the source releases it first."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _loop(self) -> None:
        next_reap = 0.0
        failing = False
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.lease.renew()
                self.renewed_at = time.monotonic()
                if failing:
                    failing = False
                    log.info("lease renewed again")
                if self.renewed_at >= next_reap:
                    self.lease.requeue_lapsed()
                    next_reap = time.monotonic() + self.ttl_s
                self.on_renewed()
            except Exception as exc:  # never die: a missed renewal is retried in TTL/3
                # Once per outage: the worker says the same of the input Redis.
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "lease renewal failed: %s", exc)
                failing = True
