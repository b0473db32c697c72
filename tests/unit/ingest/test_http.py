"""POST /infer against a real runtime (uvicorn, a real redis-server): outputs, the 4xx/5xx
answers, dead letters, metrics, the access rule, multipart files and Server-Sent Events."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aios_instance import Block, OnDataResult, PreProcessResult, keys
from aios_instance.embedded import EmbeddedRedis
from aios_instance.packet import decode_packet
from aios_instance.runtime.block import Runtime
from examples.simple_block.block import SimpleBlock
from tests.support import eventually
from tests.unit.control.support import control_settings, running
from tests.unit.ingest.blocks import END, Streamer, release


@pytest.fixture
def streamer(redis_server: EmbeddedRedis) -> Iterator[tuple[Runtime, str]]:
    release.clear()
    with running(Streamer, redis_server, infer_timeout_s=5.0) as served:
        yield served
    release.set()


def _sample(runtime: Runtime, name: str, **labels: str) -> float:
    return runtime.metrics.registry.get_sample_value(name, labels) or 0.0


def _dead(runtime: Runtime) -> list[dict[str, Any]]:
    raw = runtime.redis.lrange(keys.dead_letters(runtime.settings.block_id), 0, -1)
    return [json.loads(r) for r in raw]


def test_infer_answers_the_outputs_and_counts_them(redis_server: EmbeddedRedis) -> None:
    with running(SimpleBlock, redis_server) as (runtime, base):
        body = {"data": {"value": 0.7}, "session_id": "s1", "seq_no": 4}
        resp = httpx.post(base + "/infer", json=body, timeout=10)
        assert resp.status_code == 200
        assert resp.json() == {
            "success": True,
            "session_id": "s1",
            "seq_no": 4,
            "outputs": [{"value": 0.7, "passed": True}],
        }
        assert _sample(runtime, "aios_packets_in_total", ingress="http") == 1
        assert _sample(runtime, "aios_packets_out_total", ingress="http") == 1
        assert _sample(runtime, "aios_ingest_requests_total", ingress="http", code="200") == 1
        out = runtime.redis.llen(runtime.settings.default_output)
        assert out == 0  # answered, not routed


def test_infer_gives_a_session_when_none_is_sent(redis_server: EmbeddedRedis) -> None:
    with running(SimpleBlock, redis_server) as (_, base):
        first = httpx.post(base + "/infer", json={"data": '{"value": 1}'}, timeout=10).json()
        second = httpx.post(base + "/infer", json={"data": {"value": 1}}, timeout=10).json()
    assert first["outputs"] == [{"value": 1, "passed": True}]
    assert len(first["session_id"]) == 32 and first["session_id"] != second["session_id"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"value": 1}', "unknown field(s) value"),
        (b'{"session_id": "s"}', "'data' is missing"),
        (b'{"data": 5}', "'data' must be a JSON object, array or string"),
        (b'{"data": {}, "seq_no": "x"}', "'seq_no' must be a 32-bit integer"),
        (b'{"data": {}, "session_id": 7}', "'session_id' must be a string"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_problem(
    streamer: tuple[Runtime, str], content: bytes, message: str
) -> None:
    runtime, base = streamer
    resp = httpx.post(base + "/infer", content=content, timeout=10)
    assert resp.status_code == 400
    assert message in resp.json()["message"]
    assert _sample(runtime, "aios_packets_in_total", ingress="http") == 0


def test_failures_are_answered_dead_lettered_and_counted(streamer: tuple[Runtime, str]) -> None:
    runtime, base = streamer
    not_json = httpx.post(base + "/infer", json={"data": "{oops", "session_id": "a"}, timeout=10)
    refused = httpx.post(base + "/infer", json={"data": {"fail": "no thanks"}}, timeout=10)
    raised = httpx.post(base + "/infer", json={"data": {"raise": True}}, timeout=10)
    assert (not_json.status_code, not_json.json()["outcome"]) == (400, "bad_input")
    assert (refused.status_code, refused.json()["message"]) == (422, "on_data failed: no thanks")
    assert raised.status_code == 500 and "boom" in raised.json()["message"]
    records = _dead(runtime)[::-1]
    assert [r["outcome"] for r in records] == ["bad_input", "user_error", "user_error"]
    replayed = decode_packet(base64.b64decode(records[0]["packet"]))
    assert (replayed.session_id, replayed.data) == ("a", "{oops")
    assert _sample(runtime, "aios_dead_lettered_total", ingress="http", reason="user_error") == 2
    assert _sample(runtime, "aios_packets_failed_total", ingress="http", reason="bad_input") == 1


def test_a_block_that_does_not_answer_in_time_is_a_504(redis_server: EmbeddedRedis) -> None:
    release.clear()
    with running(Streamer, redis_server, infer_timeout_s=0.5) as (runtime, base):
        try:
            resp = httpx.post(base + "/infer", json={"data": {"wait": True}}, timeout=10)
            assert resp.status_code == 504
            assert "AIOS_INFER_TIMEOUT_S" in resp.json()["message"]
            assert [r["outcome"] for r in _dead(runtime)] == ["timeout"]
        finally:
            release.set()
        # The call returned at last: the block serves again.
        ok = httpx.post(base + "/infer", json={"data": {"words": 1}}, timeout=10)
        assert ok.json()["outputs"][0]["text"] == "w0"


def test_beyond_the_concurrency_limit_the_answer_is_429(redis_server: EmbeddedRedis) -> None:
    release.clear()
    with running(Streamer, redis_server, infer_max_concurrency=1) as (runtime, base):
        answers: list[int] = []
        first = threading.Thread(
            target=lambda: answers.append(
                httpx.post(base + "/infer", json={"data": {"wait": True}}, timeout=20).status_code
            )
        )
        first.start()
        try:
            eventually(
                lambda: _sample(runtime, "aios_ingest_in_progress", ingress="http") == 1,
                what="the first request to be admitted",
            )
            resp = httpx.post(base + "/infer", json={"data": {}}, timeout=10)
            assert resp.status_code == 429
            assert resp.headers["retry-after"] == "1"
        finally:
            release.set()
            first.join(20)
        assert answers == [200]


def test_with_a_token_infer_needs_it(redis_server: EmbeddedRedis) -> None:
    with running(SimpleBlock, redis_server, control_token="s3cret") as (_, base):
        bare = httpx.post(base + "/infer", json={"data": {"value": 1}}, timeout=10)
        wrong = httpx.post(
            base + "/infer",
            json={"data": {"value": 1}},
            headers={"Authorization": "Bearer nope"},
            timeout=10,
        )
        good = httpx.post(
            base + "/infer",
            json={"data": {"value": 1}},
            headers={"Authorization": "Bearer s3cret"},
            timeout=10,
        )
    assert (bare.status_code, wrong.status_code, good.status_code) == (401, 401, 200)


def test_files_come_as_multipart(streamer: tuple[Runtime, str]) -> None:
    _, base = streamer
    resp = httpx.post(
        base + "/infer",
        data={"data": '{"words": 1}', "session_id": "m", "seq_no": "3"},
        files={"image": ("cat.png", b"\x89PNG...", "image/png")},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["session_id"], body["seq_no"]) == ("m", 3)
    assert body["outputs"] == [{"text": "w0", "is_ws": False, "files": ["cat.png"]}]


def test_sse_streams_the_deltas_then_the_reply(streamer: tuple[Runtime, str]) -> None:
    _, base = streamer
    body = {"data": {"words": 3}, "session_id": "sse"}
    with httpx.stream("POST", base + "/infer?stream=true", json=body, timeout=10) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[:4] == [{"delta": "w0"}, {"delta": "w1"}, {"delta": "w2"}, {"delta": END}]
    final = events[4]
    assert final["done"] is True and final["outputs"][0]["text"] == "w0 w1 w2"
    assert len(events) == 5


def test_sse_ends_with_an_error_when_the_block_is_too_slow(redis_server: EmbeddedRedis) -> None:
    release.clear()
    with running(Streamer, redis_server, infer_timeout_s=0.5) as (_, base):
        try:
            with httpx.stream(
                "POST", base + "/infer?stream=true", json={"data": {"wait": True}}, timeout=10
            ) as resp:
                lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
        finally:
            release.set()
    assert len(lines) == 1
    last = json.loads(lines[0][6:])
    assert last["done"] is True and "0.5s" in last["error"]


class SlowStart(Streamer):
    constructing = threading.Event()

    def __init__(self, context: Any) -> None:
        SlowStart.constructing.set()
        release.wait(30)  # a model loading
        super().__init__(context)


def test_while_the_block_is_built_infer_is_503(redis_server: EmbeddedRedis) -> None:
    release.clear()
    settings = control_settings(redis_server)
    started: list[Runtime] = []
    starter = threading.Thread(
        target=lambda: started.append(Block(SlowStart, settings).start()), daemon=True
    )
    starter.start()
    try:
        assert SlowStart.constructing.wait(10)
        base = f"http://127.0.0.1:{settings.mgmt_port}"
        resp = httpx.post(base + "/infer", json={"data": {}}, timeout=10)
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert "starting" in resp.json()["message"]
    finally:
        release.set()
        starter.join(10)
        for runtime in started:
            runtime.stop()
            assert runtime.wait(10)


class Pairs(Streamer):
    """Joins two packets of one (session_id, seq_no) into one job."""

    def get_muxer(self) -> Any:
        from aios_instance import Muxer

        return Muxer(N=2)

    def on_preprocess(self, packet: Any) -> Any:
        return True, [PreProcessResult(packet=packet, extra_data={"words": 1})]


class HoldsFirst(Streamer):
    """Holds every other entry (a batch of two), answering both with the second."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.waiting: list[Any] = []

    def on_data(self, entry: Any, is_ws: bool = False) -> Any:
        self.waiting.append(entry.extra_data)
        if len(self.waiting) < 2:
            return True, None
        batch, self.waiting = self.waiting, []
        return True, [OnDataResult(output=item) for item in batch]


def test_a_muxer_block_takes_the_job_through_its_input_list(redis_server: EmbeddedRedis) -> None:
    with running(Pairs, redis_server) as (runtime, base):
        for _ in range(2):
            resp = httpx.post(base + "/infer", json={"data": {}, "session_id": "g"}, timeout=10)
            assert resp.status_code == 202
            assert resp.json()["queued"] is True and resp.json()["outputs"] == []
        out = runtime.settings.default_output
        eventually(lambda: runtime.redis.llen(out) == 1, what="the group's output")
        assert decode_packet(runtime.redis.rpop(out)).session_id == "g"


def test_a_held_job_is_a_202_and_the_one_completing_the_batch_gets_it(
    redis_server: EmbeddedRedis,
) -> None:
    with running(HoldsFirst, redis_server) as (runtime, base):
        first = httpx.post(base + "/infer", json={"data": {"n": 1}}, timeout=10)
        second = httpx.post(base + "/infer", json={"data": {"n": 2}}, timeout=10)
    assert (first.status_code, first.json()["held"], first.json()["outputs"]) == (202, 1, [])
    assert (second.status_code, second.json()["outputs"]) == (200, [{"n": 1}, {"n": 2}])
    sample = runtime.metrics.registry.get_sample_value
    assert sample("aios_packets_held_total", {"ingress": "http"}) == 1
