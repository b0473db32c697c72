"""Giving memory back: after a burst of large packets, the C allocator keeps the freed heap.

Packets come from producers, so their size is not ours to choose: 100 packets of 4 MB each
leave glibc's heap hundreds of MB larger, free but not returned to the system (its dynamic
mmap threshold rises with the largest blocks freed, so later large blocks come from the heap).
``Trimmer.maybe_trim()`` (called after each lease renewal) asks glibc to return free memory,
with ``malloc_trim(0)``, when the resident size is ``grow_mb`` above the smallest it has been
(at most every ``every_s``), or grew ``grow_mb`` since the last trim. Where there is no glibc
(musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Trimmer", "rss_mb"]

log = logging.getLogger(__name__)

_MAX_EVERY_S = 300.0


def rss_mb() -> float:
    """This process's resident size (from /proc; 0.0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * _PAGE_BYTES / (1 << 20)


def _malloc_trim() -> Callable[[int], Any] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim: Callable[[int], Any] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


try:
    import resource

    _PAGE_BYTES = resource.getpagesize()
except ImportError:  # pragma: no cover - not POSIX
    _PAGE_BYTES = 4096


class Trimmer:
    """Returns free heap memory to the system when the process grew."""

    def __init__(
        self,
        grow_mb: float = 32.0,
        every_s: float = 5.0,
        rss: Callable[[], float] = rss_mb,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grow_mb = grow_mb
        self.every_s = self._every_s = every_s
        self._rss = rss
        self._clock = clock
        self._trim = _malloc_trim()
        self._floor = rss()  # the smallest resident size seen (at start, after trims)
        self._last_rss = self._floor  # right after the last trim
        self._last_at = -math.inf
        self.trims = 0

    def maybe_trim(self) -> bool:
        """Trim when the resident size is ``grow_mb`` above its floor, at most every
        ``every_s`` (memory the block keeps in use is not trimmed over and over), or at once
        when it grew ``grow_mb`` more since the last trim; whether it trimmed."""
        if self._trim is None:
            return False
        now, before = self._clock(), self._rss()
        above_floor = before >= self._floor + self.grow_mb
        grew = before >= self._last_rss + self.grow_mb
        if not (grew or (above_floor and now - self._last_at >= self._every_s)):
            self._floor = min(self._floor, before)
            return False
        self._trim(0)
        self._last_rss, self._last_at = self._rss(), now
        self._floor = min(self._floor, self._last_rss)
        # Memory the block keeps (a cache, a larger model) cannot be given back: trimming for
        # it again and again would only take the allocator's locks. Back off, up to 5 min.
        helped = before - self._last_rss >= self.grow_mb / 2
        self._every_s = self.every_s if helped else min(self._every_s * 2, _MAX_EVERY_S)
        self.trims += 1
        log.debug("returned memory to the system: %.0f MB -> %.0f MB", before, self._last_rss)
        return True
