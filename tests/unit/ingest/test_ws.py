"""WebSocket streaming against a real runtime and the real ``websockets`` client: deltas in
order and the end marker, the output after them, sessions kept apart, a vanished or slow
client affecting nobody else, and the access rule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from aios_instance import keys
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.packet import make_packet
from aios_instance.runtime.block import Runtime
from tests.unit.control.support import running
from tests.unit.ingest.blocks import END, Streamer, release


@pytest.fixture
def served(redis_server: EmbeddedRedis) -> Iterator[tuple[Runtime, str]]:
    release.clear()
    with running(Streamer, redis_server, ws_port=free_port()) as (runtime, _):
        yield runtime, f"ws://127.0.0.1:{runtime.ingress.ws_port}"
    release.set()


def _until(ws: ClientConnection, key: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Messages up to and including the first that has ``key``."""
    seen = []
    while True:
        message = json.loads(ws.recv(timeout=timeout_s))
        seen.append(message)
        if key in message:
            return seen


def test_deltas_arrive_in_order_then_the_output(served: tuple[Runtime, str]) -> None:
    runtime, url = served
    with connect(url, open_timeout=5) as ws:
        ws.send(json.dumps({"session_id": "chat", "seq_no": 1, "data": {"words": 4}}))
        messages = _until(ws, "output")
    deltas = [m["delta"] for m in messages[:-1]]
    assert deltas == ["w0", "w1", "w2", "w3", END]
    assert messages[-1] == {
        "session_id": "chat",
        "seq_no": 1,
        "output": {"text": "w0 w1 w2 w3", "is_ws": True, "files": []},
    }
    sample = runtime.metrics.registry.get_sample_value
    assert sample("aios_packets_in_total", {"ingress": "ws"}) == 1


def test_string_data_and_errors_keep_the_connection(served: tuple[Runtime, str]) -> None:
    _, url = served
    with connect(url, open_timeout=5) as ws:
        ws.send("{not json")
        assert "not valid JSON" in json.loads(ws.recv(timeout=10))["error"]
        ws.send(json.dumps({"session_id": "s", "data": {"fail": "nope"}}))
        failed = _until(ws, "error")[-1]
        assert failed["outcome"] == "user_error" and failed["session_id"] == "s"
        ws.send(json.dumps({"session_id": "s", "data": '{"words": 1}'}))
        assert _until(ws, "output")[-1]["output"]["text"] == "w0"


def test_a_client_leaving_mid_stream_leaves_the_others_unaffected(
    served: tuple[Runtime, str],
) -> None:
    runtime, url = served
    with connect(url, open_timeout=5) as other, connect(url, open_timeout=5) as first:
        first.send(json.dumps({"session_id": "a", "data": {"wait": True, "words": 50}}))
        other.send(json.dumps({"session_id": "b", "data": {"words": 3}}))
        first.close()  # gone before its job even ran
        release.set()
        messages = _until(other, "output")
        assert [m.get("delta") for m in messages[:-1]] == ["w0", "w1", "w2", END]
        other.send(json.dumps({"session_id": "b", "data": {"words": 1}}))
        assert _until(other, "output")[-1]["output"]["text"] == "w0"
    assert runtime.thread is not None and runtime.thread.is_alive()


def test_a_connected_session_receives_what_queue_jobs_write(served: tuple[Runtime, str]) -> None:
    runtime, url = served
    with connect(url, open_timeout=5) as ws:
        ws.send(json.dumps({"session_id": "q", "connect": True}))
        assert json.loads(ws.recv(timeout=10)) == {"session_id": "q", "connected": True}
        packet = make_packet({"words": 2}, session_id="q")
        runtime.redis.lpush(keys.inputs(runtime.settings.block_id), packet.SerializeToString())
        got = [json.loads(ws.recv(timeout=10)) for _ in range(3)]
    assert got == [{"delta": "w0"}, {"delta": "w1"}, {"delta": END}]


def test_a_client_that_does_not_read_is_closed_and_the_block_goes_on(
    served: tuple[Runtime, str],
) -> None:
    runtime, url = served
    with connect(url, open_timeout=5, max_size=None) as slow:
        slow.send(json.dumps({"session_id": "slow", "data": {"big": 3000}}))  # 12 MB of deltas
        with connect(url, open_timeout=5) as other:
            other.send(json.dumps({"session_id": "fast", "data": {"words": 1}}))
            assert _until(other, "output")[-1]["output"]["text"] == "w0"
        sample = runtime.metrics.registry.get_sample_value
        assert (sample("aios_stream_messages_dropped_total", {"reason": "queue_full"}) or 0) > 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                slow.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


def test_with_a_token_the_socket_needs_it(redis_server: EmbeddedRedis) -> None:
    with running(Streamer, redis_server, ws_port=free_port(), control_token="t0k") as (rt, _):
        url = f"ws://127.0.0.1:{rt.ingress.ws_port}"
        with pytest.raises(InvalidStatus) as refused:
            connect(url, open_timeout=5)
        assert refused.value.response.status_code == 401
        for how in ({"additional_headers": {"Authorization": "Bearer t0k"}}, {}):
            target = url if how else url + "/?token=t0k"
            with connect(target, open_timeout=5, **how) as ws:
                ws.send(json.dumps({"session_id": "t", "data": {"words": 1}}))
                assert _until(ws, "output")[-1]["output"]["text"] == "w0"
