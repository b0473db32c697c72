"""The trimmer gives memory back after a burst: when the process is well above the smallest
it has been (not over and over while it stays there), or grew again since the last trim."""

from __future__ import annotations

from aios_instance.runtime.trim import Trimmer, rss_mb
from tests.support import FakeClock


def test_rss_is_read_from_proc() -> None:
    assert 1 < rss_mb() < 100_000


def test_it_trims_after_a_burst_and_not_again_until_it_grows_or_time_passes() -> None:
    rss, clock, calls = [50.0], FakeClock(100.0), []
    trimmer = Trimmer(grow_mb=32, every_s=5, rss=lambda: rss[0], clock=clock)

    def trim(pad: int) -> int:
        calls.append(pad)
        rss[0] = max(rss[0] - 100, 60.0)  # what glibc gives back; 10 MB stay in use
        return 1

    trimmer._trim = trim
    rss[0] = 70.0
    assert not trimmer.maybe_trim()  # 20 MB above the floor: nothing to do
    rss[0] = 250.0
    assert trimmer.maybe_trim() and rss[0] == 150.0  # a burst: given back at once
    assert not trimmer.maybe_trim()  # still 100 MB above the floor, but just trimmed
    clock.advance(5)
    assert trimmer.maybe_trim() and rss[0] == 60.0  # later: the rest is given back
    clock.advance(5)
    assert not trimmer.maybe_trim()  # 10 MB above the floor: left alone
    assert calls == [0, 0]


def test_without_malloc_trim_it_does_nothing() -> None:
    trimmer = Trimmer(rss=lambda: 500.0)
    trimmer._trim = None
    assert not trimmer.maybe_trim()


def test_memory_the_block_keeps_is_trimmed_ever_less_often() -> None:
    rss, clock, calls = [200.0], FakeClock(0.0), []
    trimmer = Trimmer(grow_mb=32, every_s=5, rss=lambda: rss[0], clock=clock)
    trimmer._floor = 50.0  # the block then kept 150 MB: nothing to give back
    trimmer._trim = calls.append
    at = []
    for second in range(60):
        if trimmer.maybe_trim():
            at.append(second)
        clock.advance(1)
    assert at == [0, 10, 30]  # 10 s, then 20 s apart: backing off
