"""Helpers every test shares: the repository root, and waiting for a condition with a bound.

Tests never sleep for a fixed time hoping work is done: they wait for the state they expect
(``eventually``) or step a worker until it is idle (``drain_until_idle``), each with a
deadline, so a hang fails fast with a message instead of stalling the suite.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

ROOT = Path(__file__).resolve().parents[1]
SIMPLE_BLOCK = f"{ROOT / 'examples' / 'simple_block' / 'block.py'}:SimpleBlock"

T = TypeVar("T")


class FakeClock:
    """A clock the test moves by hand (``clock.now = t`` or ``clock.advance(s)``)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Steppable(Protocol):
    def step(self) -> int: ...


def eventually(
    predicate: Callable[[], T],
    timeout_s: float = 10.0,
    what: str = "",
    interval_s: float = 0.01,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail the test
    (AssertionError naming ``what``) once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what or predicate}")
        time.sleep(interval_s)


def step_until(worker: Steppable, predicate: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Step ``worker`` on this thread until ``predicate()`` holds (bounded)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker did not get there within {timeout_s:g}s")
        worker.step()


def drain_until_idle(worker: Steppable, idle_steps: int = 3, timeout_s: float = 10.0) -> int:
    """Step ``worker`` until ``idle_steps`` steps in a row claim nothing; return how many
    packets it claimed in all. Bounded by ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    claimed = idle = 0
    while idle < idle_steps:
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker was still busy after {timeout_s:g}s")
        n = worker.step()
        claimed += n
        idle = 0 if n else idle + 1
    return claimed
