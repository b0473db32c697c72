"""LeaseKeeper: renews on its own thread every TTL/3, takes lapsed instances over every TTL,
samples after each renewal, and survives a failing renewal."""

from __future__ import annotations

import threading
import time

from aios_instance.runtime.lease import LeaseKeeper
from tests.support import eventually


class CountingLease:
    """A Lease that counts its calls; ``failing`` makes renew() raise."""

    def __init__(self) -> None:
        self.renewals: list[float] = []
        self.takeovers = 0
        self.failing = False

    def renew(self) -> None:
        if self.failing:
            raise ConnectionError("redis went away (simulated)")
        self.renewals.append(time.monotonic())

    def requeue_lapsed(self) -> int:
        self.takeovers += 1
        return 0


def test_renews_takes_over_and_samples_until_stopped() -> None:
    lease, sampled = CountingLease(), threading.Event()
    keeper = LeaseKeeper(lease, 0.15, on_renewed=sampled.set)
    assert keeper.renewed_at is None
    keeper.start()
    try:
        eventually(lambda: len(lease.renewals) >= 6, 5.0, "six renewals")
        assert sampled.is_set()
        # one takeover per TTL: about a third as many as renewals, and at least two
        assert 2 <= lease.takeovers <= len(lease.renewals) // 2 + 1
        assert keeper.renewed_at is not None and keeper.renewed_at >= lease.renewals[0]
    finally:
        keeper.stop()
    count = len(lease.renewals)
    assert not keeper._thread.is_alive()
    assert len(lease.renewals) == count  # nothing after stop()


def test_a_failing_renewal_keeps_the_last_time_and_the_thread() -> None:
    lease = CountingLease()
    keeper = LeaseKeeper(lease, 0.15)
    keeper.start()
    try:
        eventually(lambda: len(lease.renewals) >= 1, 5.0, "a renewal")
        lease.failing = True
        stale = eventually(lambda: keeper.renewed_at, 5.0, "renewed_at")
        failed_from = len(lease.renewals)
        lease.failing = False
        eventually(lambda: len(lease.renewals) > failed_from + 1, 5.0, "renewals to resume")
        assert keeper.renewed_at is not None and keeper.renewed_at >= stale
    finally:
        keeper.stop()
