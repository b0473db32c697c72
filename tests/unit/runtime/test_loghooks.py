"""The loop's log lines: one WARNING per failed job within a rate limit, outages once."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from aios_instance import OnDataResult, PreProcessResult
from aios_instance.packet import make_packet
from aios_instance.routing import Router, destination_from_url
from aios_instance.runtime.loghooks import LoggingHooks, RateLimit
from aios_instance.runtime.pipeline import Pipeline
from aios_instance.runtime.worker import Worker
from aios_instance.transport.memory import MemorySink, MemorySource
from tests.support import FakeClock, drain_until_idle, eventually

LOGGER = "aios_instance.runtime.worker"


class Picky:
    def on_preprocess(self, packet: Any) -> Any:
        data = json.loads(packet.data)
        if data.get("refuse"):
            return False, "not for me"
        return True, PreProcessResult(packet=packet, extra_data=data)

    def on_data(self, entry: Any) -> Any:
        if entry.extra_data.get("explode"):
            raise ValueError("bad value")
        return True, OnDataResult(output=entry.extra_data)


def _worker(source: MemorySource, hooks: LoggingHooks) -> Worker:
    default = destination_from_url("redis://127.0.0.1:6390/0", "OUT")
    sink = MemorySink()
    return Worker(
        Pipeline(Picky(), Router("picky", (default,))),
        source,
        lambda dest: sink,
        block_id="picky",
        instance_id="i1",
        idle_wait_s=0.0,
        hooks=hooks,
    )


def _put(source: MemorySource, data: dict[str, Any], seq: int) -> None:
    source.put(make_packet(data, session_id="cam", seq_no=seq).SerializeToString())


def test_each_failed_job_is_one_warning_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    source = MemorySource("picky")
    _put(source, {"refuse": True}, 1)
    _put(source, {"explode": True}, 2)
    _put(source, {"v": 3}, 3)
    assert drain_until_idle(_worker(source, LoggingHooks(block_id="picky"))) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "block picky: job cam:1 failed (user_error)" in warnings[0]
    assert "not for me" in warnings[0]
    assert "job cam:2 failed (user_error)" in warnings[1] and "bad value" in warnings[1]
    tracebacks = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("ValueError: bad value" in t for t in tracebacks)


def test_a_flood_of_failures_is_rate_limited_then_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = FakeClock()
    hooks = LoggingHooks(block_id="picky", limit=RateLimit(burst=5, window_s=10.0, clock=clock))
    source = MemorySource("picky")
    worker = _worker(source, hooks)
    for seq in range(50):
        _put(source, {"refuse": True}, seq)
    drain_until_idle(worker)
    assert len(caplog.records) == 5
    clock.advance(10.0)
    _put(source, {"refuse": True}, 99)
    drain_until_idle(worker)
    messages = [r.getMessage() for r in caplog.records]
    assert "45 more failed jobs were not logged" in messages[5]
    assert "job cam:99 failed" in messages[6]


def test_the_input_redis_going_away_is_one_error_and_its_return_one_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    source = MemorySource("picky")
    source.fail = True
    worker = _worker(source, LoggingHooks(block_id="picky"))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        eventually(lambda: any(r.levelno == logging.DEBUG for r in caplog.records), 10.0)
        source.fail = False
        eventually(lambda: any(r.levelno == logging.INFO for r in caplog.records), 10.0)
    finally:
        worker.stop()
        thread.join(10.0)
    levels = [r.levelno for r in caplog.records if r.name == LOGGER]
    assert levels.count(logging.ERROR) == 1  # the retries in between are DEBUG
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "input redis reachable again"
    ]


def test_a_rate_limit_counts_what_it_held_back() -> None:
    clock = FakeClock()
    limit = RateLimit(burst=2, window_s=1.0, clock=clock)
    assert [limit.allow() for _ in range(4)] == [True, True, False, False]
    assert limit.take_suppressed() == 0  # not until a new window
    clock.advance(1.0)
    assert limit.take_suppressed() == 2 and limit.allow()
