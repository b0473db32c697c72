"""Senders: one endpoint's pushes in order on a thread of its own, started on demand and
ended when idle; a bounded number of endpoints."""

from __future__ import annotations

import threading

import pytest

from aios_instance.runtime.senders import Sender, Senders
from tests.support import eventually


def test_pushes_run_in_order_off_the_caller_thread() -> None:
    sender = Sender("a:1")
    seen: list[tuple[int, str]] = []
    futures = [
        sender.submit(lambda i=i: seen.append((i, threading.current_thread().name)))
        for i in range(20)
    ]
    for future in futures:
        future.result(timeout=5)
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"aios-send-a:1"}
    sender.close()


def test_an_error_reaches_the_future_and_the_sender_goes_on() -> None:
    sender = Sender("a:1")

    def boom() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        sender.submit(boom).result(timeout=5)
    assert sender.submit(lambda: 7).result(timeout=5) == 7
    sender.close()


def test_the_thread_ends_when_idle_and_starts_again() -> None:
    sender = Sender("a:1", idle_s=0.05)
    assert sender.submit(lambda: 1).result(timeout=5) == 1
    eventually(lambda: sender._thread is None, what="the idle thread to end")
    assert sender.submit(lambda: 2).result(timeout=5) == 2
    sender.close()


def test_a_closed_sender_refuses_pushes() -> None:
    sender = Sender("a:1")
    sender.close()
    with pytest.raises(RuntimeError, match="closed"):
        sender.submit(lambda: 1).result(timeout=5)


def test_senders_are_bounded_and_idle_ones_make_room() -> None:
    senders = Senders(max_endpoints=2)
    busy = {"a", "b"}
    assert senders.get("a", busy.__contains__) is not None
    assert senders.get("b", busy.__contains__) is not None
    assert senders.get("c", busy.__contains__) is None  # both are pushing: later
    busy.discard("a")
    c = senders.get("c", busy.__contains__)
    assert c is not None and len(senders) == 2
    assert senders.get("c", busy.__contains__) is c  # reused
    senders.close()
    assert len(senders) == 0
