"""SessionsManager: the spec's API, idle expiry with an injected clock, threads."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aios_instance import Block, OnDataResult, PreProcessResult, keys
from aios_instance.embedded import EmbeddedRedis
from aios_instance.errors import ConfigError
from aios_instance.packet import make_packet
from aios_instance.runtime.block import Runtime
from aios_instance.sessions import SessionsManager
from aios_instance.settings import Settings


class Clock:
    """A hand-driven clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_works_without_arguments_as_the_spec_uses_it() -> None:
    sessions = SessionsManager()
    sessions.create_session("s1", {"count": 1})
    sessions.clear()
    assert len(sessions) == 0 and "s1" not in sessions


def test_create_get_update_remove() -> None:
    sessions = SessionsManager()
    created = sessions.create_session("s1", {"a": 1})
    assert sessions.get_session("s1") is created == {"a": 1}
    assert sessions.update_session("s1", {"b": 2}) == {"a": 1, "b": 2}
    assert sessions.update_session("new", {"x": 0}) == {"x": 0}
    assert sessions.has_session("new") and "new" in sessions and len(sessions) == 2
    assert sessions.remove_session("s1") is True
    assert sessions.remove_session("s1") is False
    assert sessions.get_session("s1") is None
    assert sessions.get_session("s1", {}) == {}
    assert sessions.session_ids() == ["new"]


def test_create_copies_its_input_and_resets_an_existing_session() -> None:
    sessions = SessionsManager()
    data = {"a": 1}
    sessions.create_session("s", data)
    data["a"] = 2
    assert sessions.get_session("s") == {"a": 1}
    assert sessions.create_session("s") == {}
    assert sessions.get_session("s") == {}


def test_get_session_returns_the_live_dict() -> None:
    sessions = SessionsManager()
    sessions.create_session("s")
    session = sessions.get_session("s")
    assert session is not None
    session["frames"] = [1]
    assert sessions.get_session("s") == {"frames": [1]}


def test_non_str_membership_is_false() -> None:
    sessions = SessionsManager()
    sessions.create_session("1")
    assert 1 not in sessions and "1" in sessions


def test_idle_sessions_expire_lazily_on_access() -> None:
    clock = Clock()
    sessions = SessionsManager(idle_ttl_s=10, clock=clock)
    sessions.create_session("old")
    clock.now = 5
    sessions.create_session("young")
    clock.now = 10  # "old" idle for exactly the ttl: kept
    assert sessions.session_ids() == ["old", "young"]
    clock.now = 10.5
    assert sessions.session_ids() == ["young"]
    assert sessions.get_session("old") is None
    clock.now = 100
    assert len(sessions) == 0


def test_reading_or_updating_keeps_a_session_alive_but_checking_does_not() -> None:
    clock = Clock()
    sessions = SessionsManager(idle_ttl_s=10, clock=clock)
    sessions.create_session("read")
    sessions.create_session("updated")
    sessions.create_session("checked")
    clock.now = 8
    sessions.get_session("read")
    sessions.update_session("updated", {"n": 1})
    assert sessions.has_session("checked")
    clock.now = 15
    assert sessions.session_ids() == ["read", "updated"]


def test_expire_returns_the_dropped_ids_and_accepts_an_explicit_now() -> None:
    clock = Clock()
    sessions = SessionsManager(idle_ttl_s=5, clock=clock)
    for sid in ("a", "b", "c"):
        sessions.create_session(sid)
        clock.now += 1
    assert sessions.expire(now=6.5) == ["a", "b"]
    assert sessions.expire(now=6.5) == []
    assert sessions.session_ids() == ["c"]


def test_without_ttl_nothing_expires() -> None:
    clock = Clock()
    sessions = SessionsManager(clock=clock)
    sessions.create_session("s")
    clock.now = 1e9
    assert sessions.expire() == [] and sessions.has_session("s")


@pytest.mark.parametrize("ttl", [0, -1.0])
def test_ttl_must_be_positive(ttl: float) -> None:
    with pytest.raises(ValueError, match="idle_ttl_s"):
        SessionsManager(idle_ttl_s=ttl)


def test_concurrent_use_from_threads() -> None:
    clock = Clock()
    sessions = SessionsManager(idle_ttl_s=1000, clock=clock)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(300):
                sessions.update_session(f"s{i % 20}", {f"w{worker}-{i}": i})
                sessions.get_session(f"s{(i + worker) % 20}")
                sessions.session_ids()
                sessions.expire()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(sessions) == 20
    total = sum(len(sessions.get_session(sid) or {}) for sid in sessions.session_ids())
    assert total == 8 * 300


class SessionsModel(RuleBasedStateMachine):
    """SessionsManager behaves like a dict of dicts plus a last-used time per id."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.ttl = 5.0
        self.sessions = SessionsManager(idle_ttl_s=self.ttl, clock=self.clock)
        self.model: dict[str, tuple[float, dict[str, int]]] = {}

    ids = st.sampled_from(["a", "b", "c", "d"])

    def _expire_model(self) -> None:
        now = self.clock.now
        self.model = {k: v for k, v in self.model.items() if v[0] >= now - self.ttl}

    @rule(sid=ids, value=st.integers())
    def create(self, sid: str, value: int) -> None:
        self._expire_model()
        self.sessions.create_session(sid, {"v": value})
        self.model[sid] = (self.clock.now, {"v": value})

    @rule(sid=ids, value=st.integers())
    def update(self, sid: str, value: int) -> None:
        self._expire_model()
        merged = {**self.model.get(sid, (0.0, {}))[1], "u": value}
        self.sessions.update_session(sid, {"u": value})
        self.model[sid] = (self.clock.now, merged)

    @rule(sid=ids)
    def get(self, sid: str) -> None:
        self._expire_model()
        expected = self.model.get(sid)
        assert self.sessions.get_session(sid) == (expected[1] if expected else None)
        if expected:
            self.model[sid] = (self.clock.now, expected[1])

    @rule(sid=ids)
    def remove(self, sid: str) -> None:
        self._expire_model()
        assert self.sessions.remove_session(sid) is (self.model.pop(sid, None) is not None)

    @precondition(lambda self: self.clock.now < 1000)
    @rule(dt=st.floats(min_value=0, max_value=4))
    def tick(self, dt: float) -> None:
        self.clock.now += dt

    @invariant()
    def same_live_sessions(self) -> None:
        self._expire_model()
        assert sorted(self.sessions.session_ids()) == sorted(self.model)


TestSessionsModel = SessionsModel.TestCase
TestSessionsModel.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)


# -- in the runtime: AIOS_SESSION_TTL_S and the periodic sweep ----------------------------
class SessionBlock:
    """Opens a session per job and never touches it again."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def on_preprocess(self, packet: Any) -> Any:
        return True, [PreProcessResult(packet=packet, extra_data={})]

    def on_data(self, entry: Any) -> Any:
        self.context.sessions.create_session(entry.packet.session_id, {"seen": 1})
        return True, OnDataResult(output={"session": entry.packet.session_id})


def test_session_ttl_setting() -> None:
    assert Settings.from_env({}).session_ttl_s == 0
    assert Settings.from_env({"AIOS_SESSION_TTL_S": "600"}).session_ttl_s == 600
    with pytest.raises(ConfigError, match="AIOS_SESSION_TTL_S"):
        Settings.from_env({"AIOS_SESSION_TTL_S": "-1"})


@pytest.mark.timeout(30)
def test_the_runtime_expires_idle_sessions_no_call_touches(
    redis_server: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aios_instance.runtime.block")
    block_id = f"sess-{uuid.uuid4().hex[:8]}"
    s = Settings(
        block_id=block_id,
        redis_url_override=redis_server.url,
        mgmt_port=0,
        ws_port=0,
        metrics_port=0,
        lease_ttl_s=0.6,
        idle_wait_s=0.2,
        session_ttl_s=0.3,
        default_output=f"{block_id}_out",
    )
    runtime = Block(SessionBlock, s).start()
    client = redis.Redis.from_url(redis_server.url, protocol=2)
    try:
        sessions = runtime.context.sessions
        assert sessions.idle_ttl_s == 0.3
        client.lpush(keys.inputs(block_id), make_packet({}, session_id="a").SerializeToString())
        assert client.brpop([s.default_output], timeout=10) is not None
        deadline = time.monotonic() + 10
        while "expired 1 idle session(s)" not in caplog.text:  # the lease keeper's sweep
            assert time.monotonic() < deadline, "idle session never expired"
            time.sleep(0.02)
        assert sessions.session_ids() == []
    finally:
        client.delete(keys.inputs(block_id), s.default_output)
        client.close()
        runtime.stop()
        assert runtime.wait(10)


def test_sessions_do_not_expire_without_the_setting(redis_server: EmbeddedRedis) -> None:
    s = Settings(block_id="no-ttl", redis_url_override=redis_server.url, mgmt_port=0, ws_port=0)
    runtime = Runtime(SessionBlock, s)  # constructed only: nothing is served
    try:
        assert runtime.context.sessions.idle_ttl_s is None
    finally:
        runtime.redis.close()


def test_the_existing_sdks_method_names() -> None:
    sessions = SessionsManager()
    assert sessions.get_session_data("s1") is None
    assert sessions.get_session_data("s1", {}) == {}
    assert sessions.update_session_object("s1", {"a": 1}) == {"a": 1}
    assert sessions.update_session_object("s1", {"b": 2}) == {"a": 1, "b": 2}
    assert sessions.get_session_data("s1") is sessions.get_session("s1")
    sessions.create_session("s2")
    sessions.create_session("s3")
    assert sessions.remove_sessions_data("s1") == 1
    assert sessions.remove_sessions_data(["s2", "s3", "missing"]) == 2
    assert len(sessions) == 0
