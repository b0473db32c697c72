"""The HTTP control API, over real HTTP, against a real runtime and a real redis-server."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from aios_instance import Block, OnDataResult, keys
from aios_instance.blockdata import BlockData
from aios_instance.control import api as control_module
from aios_instance.control.api import MAX_BODY_BYTES
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.packet import make_packet
from aios_instance.runtime.block import Runtime
from tests.support import eventually, non_loopback_address
from tests.unit.control.support import (
    ControlBlock,
    MgmtGate,
    PassThrough,
    control_settings,
    is_ready,
    running,
)


@pytest.fixture(scope="module")
def served(redis_server: EmbeddedRedis) -> Iterator[tuple[Runtime, str]]:
    with running(ControlBlock, redis_server) as pair:
        yield pair


@pytest.fixture
def client(served: tuple[Runtime, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[1], timeout=10) as c:
        yield c


@pytest.fixture
def block(served: tuple[Runtime, str]) -> Iterator[ControlBlock]:
    b = served[0].block
    assert isinstance(b, ControlBlock)
    b.health_mode = "ok"
    yield b
    b.health_mode = "ok"
    b.release.set()
    b.mgmt_release.set()


def test_health_live_ready(client: httpx.Client, block: ControlBlock) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {
        "success": True,
        "data": {"status": "healthy", "threshold": block.threshold},
    }
    assert client.get("/live").json() == {"success": True}
    r = client.get("/ready")
    assert (r.status_code, r.json()) == (200, {"success": True})


def test_health_errors_are_500_with_a_message(client: httpx.Client, block: ControlBlock) -> None:
    block.health_mode = "raise"
    r = client.get("/health")
    assert r.status_code == 500
    assert r.json() == {"success": False, "message": "health() raised RuntimeError('feeling sick')"}
    block.health_mode = "object"
    r = client.get("/health")
    assert r.status_code == 500 and r.json()["success"] is False
    assert "non-JSON" in r.json()["message"]


def test_ready_is_503_while_draining(client: httpx.Client, served: tuple[Runtime, str]) -> None:
    runtime = served[0]
    runtime.draining = True  # what stop() sets; the worker does not read this flag
    try:
        r = client.get("/ready")
        assert r.status_code == 503 and r.json()["success"] is False
        assert "draining" in r.json()["message"]
        assert client.get("/live").status_code == 200
    finally:
        runtime.draining = False


def test_ready_follows_the_lease_when_redis_goes_away_and_comes_back(
    redis_factory: Callable[[], EmbeddedRedis],
) -> None:
    server = redis_factory()
    with running(ControlBlock, server, lease_ttl_s=1.0) as (_, base):
        server.stop()

        def unready() -> Any:
            r = httpx.get(base + "/ready", timeout=2)
            return r if r.status_code == 503 else None

        r = eventually(unready, what="/ready to notice the lapsed lease")
        assert r.json()["success"] is False
        assert r.json()["message"].startswith("Redis unreachable: the lease was last renewed")
        assert httpx.get(base + "/live", timeout=2).status_code == 200
        server.start()
        eventually(lambda: is_ready(base), what="/ready after Redis came back")


def test_set_parameters_reaches_on_update(
    client: httpx.Client, served: tuple[Runtime, str], block: ControlBlock
) -> None:
    r = client.post("/setParameters", json={"threshold": 0.9, "mode": "strict"})
    assert r.status_code == 200
    assert r.json() == {"success": True, "updated_parameters": {"threshold": 0.9, "mode": "strict"}}
    assert block.threshold == 0.9
    params = served[0].context.block_init_parameters
    assert params["threshold"] == 0.9 and params["mode"] == "strict"


def test_refused_update_leaves_parameters_unchanged(
    client: httpx.Client, served: tuple[Runtime, str], block: ControlBlock
) -> None:
    assert client.post("/setParameters", json={"threshold": 0.3}).status_code == 200
    before = dict(served[0].context.block_init_parameters)
    r = client.post("/setParameters", json={"threshold": "high", "other": 1})
    assert (r.status_code, r.json()) == (
        400,
        {"success": False, "message": "threshold must be a number"},
    )
    r = client.post("/setParameters", json={"explode": True})
    assert r.status_code == 400 and "on_update raised" in r.json()["message"]
    assert served[0].context.block_init_parameters == before
    assert block.threshold == 0.3


def test_mgmt(client: httpx.Client) -> None:
    r = client.post("/mgmt", json={"mgmt_action": "echo", "mgmt_data": {"x": [1, 2]}})
    assert r.status_code == 200
    assert r.json() == {"success": True, "data": {"action": "echo", "data": {"x": [1, 2]}}}
    r = client.post("/mgmt", json={"mgmt_action": "echo"})
    assert r.json() == {"success": True, "data": {"action": "echo", "data": {}}}
    r = client.post("/mgmt", json={"mgmt_action": "echo", "mgmt_data": None})
    assert r.json() == {"success": True, "data": {"action": "echo", "data": {}}}
    r = client.post("/mgmt", json={"mgmt_action": "fail"})
    assert r.status_code == 500
    assert r.json() == {
        "success": False,
        "message": "management raised ValueError('cannot do that')",
    }


@pytest.mark.parametrize("opaque", ["dict", "bare"])
def test_an_accepted_update_with_a_non_json_value_changes_nothing(
    client: httpx.Client, served: tuple[Runtime, str], opaque: str
) -> None:
    assert client.post("/setParameters", json={"threshold": 0.25}).status_code == 200
    before = dict(served[0].context.block_init_parameters)
    r = client.post("/setParameters", json={"opaque": opaque, "threshold": 0.75})
    assert r.status_code == 500 and r.json()["success"] is False
    assert r.json()["message"].startswith("on_update returned a value that is not JSON")
    assert served[0].context.block_init_parameters == before  # nothing merged


def test_an_update_that_would_grow_the_parameters_too_far_is_413(
    client: httpx.Client, served: tuple[Runtime, str]
) -> None:
    params = served[0].context.block_init_parameters
    before = dict(params)
    chunk = "x" * (300 * 1024)
    try:
        answers = [client.post("/setParameters", json={f"big{i}": chunk}) for i in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 413]
        assert "bytes as JSON" in answers[-1].json()["message"]
    finally:
        params.clear()
        params.update(before)


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_probes_answer_while_slow_callbacks_pile_up(
    client: httpx.Client, served: tuple[Runtime, str], block: ControlBlock
) -> None:
    threads = control_module.CALLBACK_THREADS
    admitted = threads + control_module.CALLBACK_BACKLOG
    n = 60
    block.mgmt_release.clear()
    gate = MgmtGate(served[1], n)
    try:
        eventually(lambda: block.mgmt_waiting == threads, what="every callback thread to be busy")
        eventually(lambda: gate.done() == n - admitted, what="the overflow to be turned away")
        assert all(status == 503 for status, _ in gate.results)
        assert gate.results[0][1]["message"].startswith(f"busy: {admitted} parameter/management")
        for path in ("/live", "/ready", "/health", "/metrics"):
            r = client.get(path)
            assert r.status_code == 200, (path, r.text)
        r = client.post("/setParameters", json={"threshold": 0.5})  # shares the full pool
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert block.mgmt_waiting == threads  # still all in flight while we probed
    finally:
        block.mgmt_release.set()
        gate.join()
    statuses = sorted(status for status, _ in gate.results)
    assert statuses == [200] * admitted + [503] * (n - admitted)
    released = {"success": True, "data": {"released": True}}
    assert all(body == released for status, body in gate.results if status == 200)


class SlowStart(PassThrough):
    """A block whose constructor waits for the test (a model that takes a while to load)."""

    entered = threading.Event()
    proceed = threading.Event()

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        SlowStart.entered.set()
        if not SlowStart.proceed.wait(30):
            raise RuntimeError("the test never let the constructor finish")

    def health(self) -> Any:
        return {"status": "loaded"}


def test_probes_answer_while_the_block_is_constructed(redis_server: EmbeddedRedis) -> None:
    SlowStart.entered.clear()
    SlowStart.proceed.clear()
    s = control_settings(redis_server)
    base = f"http://127.0.0.1:{s.mgmt_port}"
    built: list[Runtime] = []
    builder = threading.Thread(target=lambda: built.append(Block(SlowStart, s).start()))
    builder.start()
    starting = {"success": False, "message": "starting: the block is being constructed"}
    try:
        assert SlowStart.entered.wait(10), "the constructor never ran"
        with httpx.Client(base_url=base, timeout=5) as c:
            r = c.get("/live")
            assert (r.status_code, r.json()) == (200, {"success": True})
            for r in (
                c.get("/ready"),
                c.get("/health"),
                c.post("/mgmt", json={"mgmt_action": "x"}),
                c.post("/setParameters", json={"a": 1}),
            ):
                assert (r.status_code, r.json()) == (503, starting), r.request.url
            assert c.get("/metrics").status_code == 200
    finally:
        SlowStart.proceed.set()
        builder.join(10)
    assert len(built) == 1, "Block.start() failed"
    runtime = built[0]
    try:
        eventually(lambda: is_ready(base), what="/ready once constructed")
        r = httpx.get(base + "/health", timeout=5)
        assert r.json() == {"success": True, "data": {"status": "loaded"}}
    finally:
        runtime.stop()
        assert runtime.wait(10)


class BrokenStart(PassThrough):
    def __init__(self, context: Any) -> None:
        raise RuntimeError("model file missing")


def test_a_failing_constructor_closes_the_control_api(redis_server: EmbeddedRedis) -> None:
    s = control_settings(redis_server)
    with pytest.raises(RuntimeError, match="model file missing"):
        Block(BrokenStart, s).start()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{s.mgmt_port}/live", timeout=2)


class PushingBlock(PassThrough):
    """Pushes every job to the sidecar ``audit`` and emits an event."""

    def on_data(self, entry: Any) -> Any:
        self.context.side_cars.push_to_sidecar("audit", entry.packet)
        self.context.events.push_event("job_seen", {"session": entry.packet.session_id})
        return True, OnDataResult(output={"ok": True})


def test_sidecar_and_event_push_failures_are_counted_in_metrics(
    redis_server: EmbeddedRedis,
) -> None:
    nobody = free_port()  # nothing listens here: every push fails
    data = BlockData(
        {"sidecars": {"audit": {"external": True, "external_redis_url": f"127.0.0.1:{nobody}"}}}
    )
    with running(
        PushingBlock, redis_server, data, events_redis_url=f"redis://127.0.0.1:{nobody}/0"
    ) as (runtime, base):
        r = redis.Redis.from_url(redis_server.url, protocol=2)
        try:
            for i in range(3):
                packet = make_packet({"i": i}, session_id=f"s{i}")
                r.lpush(keys.inputs(runtime.settings.block_id), packet.SerializeToString())
            out = runtime.settings.default_output
            eventually(lambda: r.llen(out) >= 3, what="the outputs")
        finally:
            r.close()
        samples = samples_of(httpx.get(base + "/metrics", timeout=5).text)
    assert samples[("aios_sidecar_push_failed_total", (("sidecar", "audit"),))] == 3
    assert samples[("aios_event_push_failed_total", ())] == 3
    assert runtime.context.side_cars.failures == {"audit": 3}


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/mgmt", {"mgmt_data": 1}, "mgmt_action is required"),
        ("/mgmt", {"mgmt_action": 5}, "must be a non-empty string"),
        ("/mgmt", {"mgmt_action": ""}, "must be a non-empty string"),
        ("/mgmt", [1, 2], "got an array"),
        ("/setParameters", [1, 2], "got an array"),
        ("/setParameters", "threshold", "got a string"),
        ("/setParameters", None, "got null"),
    ],
)
def test_wrong_shapes_are_400(client: httpx.Client, path: str, body: Any, fragment: str) -> None:
    r = client.post(path, content=json.dumps(body))
    assert r.status_code == 400 and r.json()["success"] is False
    assert fragment in r.json()["message"]


@pytest.mark.parametrize(
    "raw", [b"", b"{bad", b"\xff\xfe{}", b'{"a": 1}{', b"[" * 5000 + b"]" * 5000]
)
def test_malformed_bodies_are_400(client: httpx.Client, raw: bytes) -> None:
    for path in ("/setParameters", "/mgmt"):
        r = client.post(path, content=raw)
        assert r.status_code == 400, (path, raw[:20], r.text)
        assert r.json()["success"] is False and "not valid JSON" in r.json()["message"]


def test_unknown_path_and_wrong_method(client: httpx.Client) -> None:
    for r in (client.get("/nope"), client.post("/health/x", json={})):
        assert (r.status_code, r.json()) == (404, {"success": False, "message": "Not Found"})
    cases = [(client.post("/health"), {"GET", "HEAD"}), (client.get("/setParameters"), {"POST"})]
    for r, allow in cases:
        assert (r.status_code, r.json()) == (
            405,
            {"success": False, "message": "Method Not Allowed"},
        )
        assert set(r.headers["allow"].split(", ")) == allow


def test_body_limit(client: httpx.Client) -> None:
    r = client.post("/setParameters", content=b" " * (MAX_BODY_BYTES + 1))
    assert r.status_code == 413 and r.json()["success"] is False

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b" " * 65536

    r = client.post("/mgmt", content=chunked())
    assert r.status_code == 413 and r.json()["success"] is False
    head = b'{"mgmt_action": "get_threshold", "pad": "'
    exact = head + b"x" * (MAX_BODY_BYTES - len(head) - 2) + b'"}'
    assert len(exact) == MAX_BODY_BYTES
    assert client.post("/mgmt", content=exact).status_code == 200


def test_token_guards_mutations_only(redis_server: EmbeddedRedis) -> None:
    with running(ControlBlock, redis_server, control_token="s3cr\u00e9t") as (runtime, base):
        post = {"url": base + "/setParameters", "json": {"threshold": 0.7}}
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
            r = httpx.post(**post, headers=headers)
            assert r.status_code == 401 and r.json()["success"] is False
            assert r.headers["www-authenticate"] == "Bearer"
        r = httpx.post(base + "/mgmt", json={"mgmt_action": "echo"})
        assert r.status_code == 401
        assert runtime.context.block_init_parameters == {}
        good = {"Authorization": b"Bearer " + "s3cr\u00e9t".encode()}
        r = httpx.post(**post, headers=good)
        assert r.status_code == 200 and runtime.context.block_init_parameters == {"threshold": 0.7}
        r = httpx.post(base + "/mgmt", json={"mgmt_action": "echo"}, headers=good)
        assert r.status_code == 200
        assert httpx.get(base + "/health").status_code == 200  # GETs stay open
        assert httpx.get(base + "/metrics").status_code == 200
        assert refused(runtime, "unauthenticated") == 4


def refused(runtime: Runtime, reason: str) -> float:
    sample = runtime.metrics.sample("aios_control_requests_refused_total", {"reason": reason})
    return sample or 0.0


FORWARDED = {"X-Forwarded-For": "203.0.113.7"}


def test_live_is_503_with_the_runtimes_live_problem(
    client: httpx.Client, served: tuple[Runtime, str]
) -> None:
    runtime = served[0]
    runtime.live_problem = "a job has run for 301s (AIOS_JOB_TIMEOUT_S=300)"
    try:
        r = client.get("/live")
        assert (r.status_code, r.json()) == (
            503,
            {"success": False, "message": "a job has run for 301s (AIOS_JOB_TIMEOUT_S=300)"},
        )
    finally:
        runtime.live_problem = ""
    assert client.get("/live").status_code == 200


def test_a_forwarded_caller_cannot_mutate_without_a_token(
    client: httpx.Client, served: tuple[Runtime, str], block: ControlBlock
) -> None:
    """Through 127.0.0.1, but a proxy on this host says it forwards 203.0.113.7: not local."""
    runtime = served[0]
    before, calls = refused(runtime, "not_loopback"), len(block.calls)
    params = dict(runtime.context.block_init_parameters)
    r = client.post("/setParameters", json={"threshold": 0.9}, headers=FORWARDED)
    assert r.status_code == 403 and r.json()["success"] is False
    message = r.json()["message"]
    for remedy in ("AIOS_CONTROL_TOKEN", "Authorization: Bearer", "AIOS_CONTROL_BIND=127.0.0.1"):
        assert remedy in message
    r = client.post("/mgmt", json={"mgmt_action": "echo"}, headers={"Forwarded": "for=x"})
    assert r.status_code == 403
    assert (len(block.calls), runtime.context.block_init_parameters) == (calls, params)
    assert refused(runtime, "not_loopback") == before + 2
    for path in ("/live", "/ready", "/health", "/metrics"):  # probes and metrics stay open
        assert client.get(path, headers=FORWARDED).status_code == 200, path


@pytest.mark.parametrize("bind", ["0.0.0.0", "::"])
def test_an_unauthenticated_set_parameters_is_refused_when_the_api_listens_beyond_loopback(
    redis_server: EmbeddedRedis, bind: str
) -> None:
    """A caller from a non-loopback address of this host (connecting to 127.0.0.1)."""
    source = non_loopback_address()
    if source is None:
        pytest.skip("this host has no non-loopback IPv4 address to connect to 127.0.0.1 from")
    if bind == "::" and not socket.has_dualstack_ipv6():
        pytest.skip("no dual-stack IPv6 here")
    with running(ControlBlock, redis_server, control_bind=bind) as (runtime, base):
        remote = httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=5)
        with remote:
            r = remote.post(base + "/setParameters", json={"threshold": 0.9})
            assert r.status_code == 403 and source in r.json()["message"]
            r = remote.post(base + "/mgmt", json={"mgmt_action": "echo"})
            assert r.status_code == 403
            assert remote.get(base + "/live").status_code == 200
            assert remote.get(base + "/metrics").status_code == 200
        assert runtime.context.block_init_parameters == {}
        assert refused(runtime, "not_loopback") == 2
        r = httpx.post(base + "/setParameters", json={"threshold": 0.9}, timeout=5)
        assert r.status_code == 200  # the same request from loopback


@pytest.mark.parametrize(
    ("overrides", "phrase", "forwarded_status", "warnings"),
    [
        ({}, "mutations from loopback callers only", 403, 0),
        ({"control_token": "t0k"}, "mutations need the bearer token", 401, 0),
        ({"control_auth": "none"}, "mutations open to every caller", 200, 1),
    ],
)
def test_the_start_up_line_names_the_policy_and_none_warns_once(
    redis_server: EmbeddedRedis,
    caplog: pytest.LogCaptureFixture,
    overrides: dict[str, Any],
    phrase: str,
    forwarded_status: int,
    warnings: int,
) -> None:
    caplog.set_level(logging.INFO, logger="aios_instance.control.api")
    with running(ControlBlock, redis_server, **overrides) as (_, base):
        r = httpx.post(base + "/setParameters", json={"threshold": 0.8}, headers=FORWARDED)
        assert r.status_code == forwarded_status
    started = [r.getMessage() for r in caplog.records if "control API on" in r.getMessage()]
    assert len(started) == 1 and phrase in started[0]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len([r for r in warned if "AIOS_CONTROL_AUTH=none" in r.getMessage()]) == warnings


def test_user_metrics_with_labels(
    client: httpx.Client, served: tuple[Runtime, str], redis_server: EmbeddedRedis
) -> None:
    runtime = served[0]
    block_id = runtime.settings.block_id
    jobs = [("a", 0.2), ("a", 0.7), ("b", 0.9), ("a", 0.4), ("b", 0.1)]
    r = redis.Redis.from_url(redis_server.url, protocol=2)
    try:
        for kind, value in jobs:
            packet = make_packet({"kind": kind, "value": value}, session_id="m")
            r.lpush(keys.inputs(block_id), packet.SerializeToString())
        out = runtime.settings.default_output
        eventually(lambda: r.llen(out) >= len(jobs), what="the outputs")
    finally:
        r.close()
    resp = client.get("/metrics")
    assert resp.headers["content-type"] == control_module.CONTENT_TYPE_LATEST
    samples = samples_of(resp.text)
    assert samples[("jobs_total", (("kind", "a"),))] == 3
    assert samples[("jobs_total", (("kind", "b"),))] == 2
    assert samples[("last_value", (("kind", "a"),))] == 0.4
    assert samples[("last_value", (("kind", "b"),))] == 0.1
    assert samples[("value_seen_bucket", (("kind", "a"), ("le", "0.5")))] == 2
    assert samples[("value_seen_count", (("kind", "b"),))] == 2
    assert samples[("value_seen_sum", (("kind", "b"),))] == pytest.approx(1.0)
    assert samples[("aios_packets_out_total", (("ingress", "queue"),))] >= len(jobs)


def test_slow_health_is_503_and_other_probes_do_not_wait_for_it(
    client: httpx.Client, block: ControlBlock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control_module, "HEALTH_TIMEOUT_S", 1.0)
    block.health_mode = "slow"  # health() blocks until released (10 s at most)
    block.release.clear()
    calls_before = block.health_calls
    answered: list[tuple[int, int]] = []  # (status, health() calls still running then)

    def probe() -> None:
        r = httpx.get(str(client.base_url) + "/health", timeout=10)
        answered.append((r.status_code, block.health_running))
        assert r.json() == {"success": False, "message": "health() did not answer within 1s"}

    threads = [threading.Thread(target=probe) for _ in range(3)]
    for t in threads:
        t.start()
    eventually(lambda: block.health_running == 1, what="health() to be called")
    for _ in range(5):  # while health() hangs, liveness and the rest answer
        assert client.get("/live").status_code == 200
        assert client.get("/ready").status_code == 200
        assert client.post("/mgmt", json={"mgmt_action": "get_threshold"}).status_code == 200
    assert block.health_running == 1, "the probes waited for health() to return"
    for t in threads:
        t.join(10)
    # each probe was answered by the timeout while health() still ran, not by its return
    assert answered == [(503, 1)] * 3
    assert block.health_calls == calls_before + 1  # concurrent probes shared one call
    block.release.set()
    block.health_mode = "ok"
    eventually(lambda: client.get("/health").status_code == 200, what="health to recover")


class FuzzBlock(PassThrough):
    """Accepts every update; management answers every action."""

    def on_update(self, updated: dict[str, Any]) -> tuple[bool, Any]:
        return True, updated

    def management(self, action: str, data: Any) -> Any:
        return {"action": action, "data": data}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=256),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"mgmt_action": json_values}, optional={"mgmt_data": json_values}).map(
        lambda v: json.dumps(v).encode()
    ),
)


def test_fuzz_bodies_never_500(redis_server: EmbeddedRedis) -> None:
    with running(FuzzBlock, redis_server) as (_, base), httpx.Client(base_url=base) as c:

        @settings(
            max_examples=100,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(path=st.sampled_from(["/setParameters", "/mgmt"]), body=bodies)
        def check(path: str, body: bytes) -> None:
            r = c.post(path, content=body)
            assert r.status_code < 500, (path, body, r.text)
            assert isinstance(r.json()["success"], bool)

        check()
