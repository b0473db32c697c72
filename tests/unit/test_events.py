"""BlockEvents: in-memory recording, RPUSH to a real Redis, failures that never raise."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

import pytest
import redis

from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.events import RECORDED_MAX, BlockEvents


def _queue(client: redis.Redis, name: str = "EVENTS_QUEUE") -> list[dict[str, object]]:
    return [json.loads(raw) for raw in client.lrange(name, 0, -1)]


def _connections_received(client: redis.Redis) -> int:
    return int(client.info("stats")["total_connections_received"])


def test_without_redis_events_are_recorded_in_memory() -> None:
    events = BlockEvents()
    assert events.in_memory
    assert events.push_event("inference_started", {"session_id": "s", "seq_no": 3, "ts": 1.5})
    assert events.push_event("done")
    assert list(events.recorded) == [
        {
            "event_name": "inference_started",
            "block_id": "",
            "event_data": {"session_id": "s", "seq_no": 3, "ts": 1.5},
        },
        {"event_name": "done", "block_id": "", "event_data": None},
    ]
    assert (events.pushed, events.failed) == (2, 0)


def test_recorded_events_are_detached_from_the_callers_data() -> None:
    events = BlockEvents(block_id="b1")
    data = {"items": [1]}
    events.push_event("e", data)
    data["items"].append(2)
    assert events.recorded[0]["event_data"] == {"items": [1]}
    assert events.recorded[0]["block_id"] == "b1"


def test_recording_is_bounded() -> None:
    events = BlockEvents()
    for i in range(RECORDED_MAX + 5):
        events.push_event("e", i)
    assert len(events.recorded) == RECORDED_MAX
    assert events.recorded[0]["event_data"] == 5
    assert events.pushed == RECORDED_MAX + 5


def test_unserializable_data_returns_false_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    failures: list[None] = []
    events = BlockEvents(on_failure=lambda: failures.append(None))
    with caplog.at_level(logging.ERROR, logger="aios_instance.events"):
        assert events.push_event("bad", {"blob": object()}) is False
    assert events.failed == 1 and len(failures) == 1 and len(events.recorded) == 0
    assert "'bad'" in caplog.text and "JSON" in caplog.text


def test_events_are_rpushed_as_json(redis_client: redis.Redis) -> None:
    events = BlockEvents("block-7", redis=redis_client)
    assert not events.in_memory
    assert events.push_event("first", {"n": 1})
    assert events.push_event("second", [1, 2.5])
    assert _queue(redis_client) == [
        {"event_name": "first", "block_id": "block-7", "event_data": {"n": 1}},
        {"event_name": "second", "block_id": "block-7", "event_data": [1, 2.5]},
    ]
    assert (events.pushed, events.failed, len(events.recorded)) == (2, 0, 0)


def test_url_client_is_created_lazily_and_reused(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    before = _connections_received(redis_client)
    events = BlockEvents("b", redis_server.url, queue="MY_EVENTS")
    assert _connections_received(redis_client) == before
    for i in range(50):
        assert events.push_event("tick", i)
    assert _connections_received(redis_client) == before + 1
    assert [e["event_data"] for e in _queue(redis_client, "MY_EVENTS")] == list(range(50))
    events.close()
    assert events.push_event("after_close")  # a closed client is recreated on demand
    assert redis_client.llen("MY_EVENTS") == 51
    events.close()


def test_empty_url_means_in_memory() -> None:
    assert BlockEvents("b", "").in_memory


def test_unreachable_redis_is_logged_once_counted_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures: list[None] = []
    events = BlockEvents(
        "b", f"redis://127.0.0.1:{free_port()}/0", on_failure=lambda: failures.append(None)
    )
    with caplog.at_level(logging.DEBUG, logger="aios_instance.events"):
        assert events.push_event("lost", 1) is False
        assert events.push_event("lost", 2) is False
    assert events.failed == 2 and events.pushed == 0 and len(failures) == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'lost'" in warnings[0].getMessage()
    events.close()


def test_pushes_resume_when_redis_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    events = BlockEvents("b", f"redis://127.0.0.1:{port}/0", retry_after_s=0)
    assert events.push_event("lost") is False
    with EmbeddedRedis(port=port) as server, caplog.at_level(logging.INFO, "aios_instance"):
        assert events.push_event("kept") is True
        client = redis.Redis.from_url(server.url, protocol=2)
        assert [e["event_name"] for e in _queue(client)] == ["kept"]
        client.close()
        events.close()
    assert "reachable again" in caplog.text


def test_after_a_failure_pushes_fail_fast_for_retry_after_s() -> None:
    port = free_port()
    events = BlockEvents("b", f"redis://127.0.0.1:{port}/0", retry_after_s=3600)
    assert events.push_event("lost") is False
    with EmbeddedRedis(port=port) as server:
        assert events.push_event("skipped") is False  # not even attempted
        client = redis.Redis.from_url(server.url, protocol=2)
        assert client.llen("EVENTS_QUEUE") == 0
        client.close()
    assert events.failed == 2
    events.close()


def test_a_failing_hook_does_not_escape(caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> None:
        raise RuntimeError("hook")

    events = BlockEvents(on_failure=boom)
    assert events.push_event("x", {1, 2}) is False
    assert "on_failure hook" in caplog.text


@pytest.mark.parametrize("mode", ["memory", "redis"])
def test_concurrent_pushes_are_all_counted(mode: str, request: pytest.FixtureRequest) -> None:
    client: redis.Redis | None = (
        request.getfixturevalue("redis_client") if mode == "redis" else None
    )
    events = BlockEvents("b", redis=client)
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        barrier.wait()
        for i in range(200):
            events.push_event("e", [worker, i])

    run_threads(work, 8)
    assert events.pushed == 1600 and events.failed == 0
    stored = _queue(client) if client is not None else list(events.recorded)
    assert sorted(tuple(e["event_data"]) for e in stored) == [  # type: ignore[arg-type]
        (w, i) for w in range(8) for i in range(200)
    ]


def run_threads(target: Callable[[int], None], n: int) -> None:
    """Run ``target(i)`` on ``n`` threads and wait for all of them."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_standalone_events_read_block_id_and_redis_url_from_the_environment(
    redis_server: EmbeddedRedis, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLOCK_ID", "env-block")
    monkeypatch.setenv("BLOCK_EVENTS_REDIS_URL", redis_server.url)
    events = BlockEvents(queue="ENV_EVENTS")  # the spec's standalone BlockEvents()
    assert (events.block_id, events.in_memory) == ("env-block", False)
    assert events.push_event("started", {"n": 1})
    assert _queue(redis_client, "ENV_EVENTS") == [
        {"event_name": "started", "block_id": "env-block", "event_data": {"n": 1}}
    ]
    events.close()
    given = BlockEvents("mine")  # a block id given (the runtime, TestContext): no environment
    assert (given.block_id, given.in_memory) == ("mine", True)


def test_standalone_events_without_the_environment_stay_in_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BLOCK_ID", raising=False)
    monkeypatch.delenv("BLOCK_EVENTS_REDIS_URL", raising=False)
    events = BlockEvents()
    assert (events.block_id, events.in_memory) == ("", True)
