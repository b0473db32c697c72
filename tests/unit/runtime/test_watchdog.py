"""The watchdog and the gate: a call of user code past the timeout, or a stop past its
deadline, is reported; the gate fences the worker off only between its transport calls."""

from __future__ import annotations

import threading

import pytest

from aios_instance.runtime.watchdog import Abandoned, Gate, Running, Stuck, Watchdog
from tests.support import FakeClock


def _dog(timeout_s: float, clock: FakeClock) -> tuple[Watchdog, Running, list[Stuck]]:
    running, seen = Running(), []

    def stuck(found: Stuck) -> bool:
        seen.append(found)
        return True

    return Watchdog(running, timeout_s, stuck, clock=clock), running, seen


def test_a_call_past_the_timeout_is_stuck_and_one_within_it_is_not() -> None:
    clock = FakeClock(100.0)
    dog, running, _ = _dog(2.0, clock)
    assert dog.check() is None  # nothing running
    running.call = (100.0, "on_data", (b"p",))
    clock.advance(2.0)
    assert dog.check() is None  # at the limit: not past it
    clock.advance(0.5)
    stuck = dog.check()
    assert stuck is not None and stuck.timed_out
    assert (stuck.phase, stuck.raws, stuck.running_s) == ("on_data", (b"p",), 2.5)
    running.call = None  # it returned
    assert dog.check() is None


def test_a_zero_timeout_times_no_call_but_a_stop_deadline_still_holds() -> None:
    clock = FakeClock(0.0)
    dog, running, _ = _dog(0.0, clock)
    running.call = (0.0, "flush", ())
    clock.advance(10_000)
    assert dog.check() is None
    dog.stop_by(10_005.0)
    assert dog.check() is None
    clock.advance(5.0)
    stuck = dog.check()
    assert stuck is not None and not stuck.timed_out and stuck.phase == "flush"
    running.call = None
    stuck = dog.check()
    assert stuck is not None and stuck.call is None and stuck.phase == ""


def test_the_thread_reports_once_and_ends() -> None:
    running = Running(call=(0.0, "on_data", (b"x",)))  # began long ago on the real clock
    reported = threading.Event()
    seen: list[Stuck] = []

    def stuck(found: Stuck) -> bool:
        seen.append(found)
        reported.set()
        return True

    dog = Watchdog(running, 0.05, stuck).start()
    assert reported.wait(5)
    dog._thread.join(5)
    assert not dog._thread.is_alive() and len(seen) == 1


def test_the_thread_keeps_watching_when_the_call_returned_before_it_acted() -> None:
    running = Running(call=(0.0, "on_data", (b"x",)))
    calls: list[Stuck] = []
    second = threading.Event()

    def stuck(found: Stuck) -> bool:
        calls.append(found)
        if len(calls) == 1:
            running.call = (0.0, "on_data", (b"y",))  # the next call hangs too
            return False  # "it returned after all"
        second.set()
        return True

    dog = Watchdog(running, 0.05, stuck).start()
    try:
        assert second.wait(5)
        assert [c.raws for c in calls] == [(b"x",), (b"y",)]
    finally:
        dog.stop()


def test_the_gate_fences_the_worker_off_after_its_call_and_raises_abandoned() -> None:
    gate = Gate()
    with gate:  # a transport call in progress keeps the gate
        assert gate.close(0.05) == "busy"
    assert gate.close(1.0, lambda: False) == "returned"
    with gate:
        pass  # still open
    assert gate.close(1.0) == "fenced"
    with pytest.raises(Abandoned), gate:
        pass


def test_closing_waits_for_the_call_in_progress() -> None:
    gate, inside, leave = Gate(), threading.Event(), threading.Event()
    order: list[str] = []

    def worker() -> None:
        with gate:
            inside.set()
            assert leave.wait(5)
            order.append("call ended")

    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(5)
    threading.Timer(0.05, leave.set).start()
    assert gate.close(5.0) == "fenced"
    order.append("fenced")
    thread.join(5)
    assert order == ["call ended", "fenced"]
