"""RuntimeTarget: the control plane's view of a real Runtime (on the session redis-server), and
``readiness``, the pure judgement behind ``/ready``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from aios_instance import Block
from aios_instance.control.target import DRAINING, STARTING, ControlTarget
from aios_instance.embedded import EmbeddedRedis
from aios_instance.errors import ParameterLimitError, UpdateResultError
from aios_instance.runtime.block import Runtime
from aios_instance.runtime.deadletter import record_packets
from aios_instance.runtime.target import MAX_PARAMETER_KEYS, RuntimeTarget, readiness
from aios_instance.settings import Settings
from tests.support import eventually
from tests.unit.control.support import PassThrough


class Tunable(PassThrough):
    """Refuses a non-numeric threshold, raises on 'explode', accepts 'opaque' with no JSON."""

    def on_update(self, updated: dict[str, Any]) -> tuple[bool, Any]:
        if updated.get("explode"):
            raise RuntimeError("on_update exploded")
        if updated.get("opaque"):
            return True, {"model": object()}
        if not isinstance(updated.get("threshold", 0), (int, float)):
            return False, "threshold must be a number"
        return True, {**updated, "normalised": True}

    def health(self) -> Any:
        return {"status": "tuned"}

    def management(self, action: str, data: Any) -> Any:
        return {"action": action, "data": data}


def serving(block_class: type[Any], server: EmbeddedRedis, block_id: str) -> Iterator[Runtime]:
    settings = Settings(
        block_id=block_id,
        instance_id=f"{block_id}-1",
        redis_url_override=server.url,
        mgmt_port=0,
        ws_port=0,
        metrics_port=0,
        idle_wait_s=0.2,
    )
    runtime = Block(block_class, settings).start()
    try:
        eventually(lambda: runtime.control.not_ready() == "", what="the runtime to serve")
        yield runtime
    finally:
        runtime.stop()
        assert runtime.wait(10)


@pytest.fixture(scope="module")
def tunable(redis_server: EmbeddedRedis) -> Iterator[Runtime]:
    yield from serving(Tunable, redis_server, "target-tunable")


@pytest.fixture(scope="module")
def plain(redis_server: EmbeddedRedis) -> Iterator[Runtime]:
    yield from serving(PassThrough, redis_server, "target-plain")


@pytest.fixture
def parameters(tunable: Runtime) -> Iterator[dict[str, Any]]:
    """The tunable block's parameters, emptied before and after the test."""
    params = tunable.context.block_init_parameters
    params.clear()
    yield params
    params.clear()


# -- readiness ---------------------------------------------------------------------------------
def ready_at(now: float, **state: Any) -> str:
    given = {"constructed": True, "draining": False, "renewed_at": 100.0, "ttl_s": 10.0}
    return readiness(**{**given, **state}, now=now)


def test_readiness_states_in_the_order_they_are_judged() -> None:
    assert ready_at(105.0) == ""
    assert ready_at(110.0) == ""  # renewed exactly one TTL ago: still within it
    assert ready_at(105.0, constructed=False, draining=True, renewed_at=None) == STARTING
    assert ready_at(105.0, draining=True, renewed_at=None) == DRAINING
    assert ready_at(105.0, renewed_at=None) == "starting: not serving yet"
    lapsed = ready_at(112.5)
    assert lapsed == "Redis unreachable: the lease was last renewed 12.5s ago"


def test_a_serving_runtime_is_ready_until_it_drains(tunable: Runtime) -> None:
    target = tunable.control
    assert target.constructed() and target.not_ready() == ""
    tunable.draining = True  # what stop() sets
    try:
        assert target.not_ready() == DRAINING
    finally:
        tunable.draining = False
    assert target.not_ready() == ""


def test_the_runtime_target_is_a_control_target(tunable: Runtime) -> None:
    target: ControlTarget = tunable.control  # checked by mypy
    assert isinstance(target, RuntimeTarget) and target.settings is tunable.settings
    assert target.metrics is tunable.metrics  # the control plane's series join the block's


def test_not_live_is_the_runtimes_live_problem(tunable: Runtime) -> None:
    target = tunable.control
    assert target.not_live() == ""
    tunable.live_problem = "a job has run for 301s"  # what the job watchdog sets
    try:
        assert target.not_live() == "a job has run for 301s"
        assert target.not_ready() == ""  # liveness and readiness are separate questions
    finally:
        tunable.live_problem = ""
    assert target.not_live() == ""


# -- parameters --------------------------------------------------------------------------------
def test_an_accepted_update_merges_what_on_update_returned(
    tunable: Runtime, parameters: dict[str, Any]
) -> None:
    ok, value = tunable.control.apply_parameters({"threshold": 0.8})
    assert (ok, value) == (True, {"threshold": 0.8, "normalised": True})
    assert parameters == {"threshold": 0.8, "normalised": True}


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"threshold": "high"}, "threshold must be a number"),
        ({"explode": True}, "on_update raised RuntimeError('on_update exploded')"),
    ],
)
def test_a_refused_or_raising_update_changes_nothing(
    tunable: Runtime, parameters: dict[str, Any], update: dict[str, Any], reason: str
) -> None:
    parameters["threshold"] = 0.5
    assert tunable.control.apply_parameters(update) == (False, reason)
    assert parameters == {"threshold": 0.5}


def test_an_accepted_value_that_is_not_json_raises_and_changes_nothing(
    tunable: Runtime, parameters: dict[str, Any]
) -> None:
    with pytest.raises(UpdateResultError, match="not JSON"):
        tunable.control.apply_parameters({"opaque": True, "threshold": 0.1})
    assert parameters == {}


def test_without_on_update_every_update_is_accepted_as_given(plain: Runtime) -> None:
    update = {"threshold": 0.3, "mode": "strict"}
    assert plain.control.apply_parameters(update) == (True, update)
    assert plain.context.block_init_parameters == update


# -- health, management, metrics, dead letters ---------------------------------------------------
def test_health_and_management_reach_the_block(tunable: Runtime) -> None:
    assert tunable.control.health() == {"status": "tuned"}
    assert tunable.control.management("echo", [1]) == {"action": "echo", "data": [1]}


def test_defaults_for_a_block_without_health_or_management(plain: Runtime) -> None:
    assert plain.control.health() == {"status": "healthy"}
    assert plain.control.management("reload", {}) == {
        "message": "block defines no management(); action 'reload' ignored"
    }


def test_exposition_and_snapshot_are_the_blocks_metrics(tunable: Runtime) -> None:
    assert b"aios_packets_out_total" in tunable.control.exposition()
    snapshot = tunable.control.snapshot()
    assert (snapshot["blockId"], snapshot["instanceId"]) == ("target-tunable", "target-tunable-1")
    assert "gpus" in snapshot["hardware"]


def test_dead_letter_records_name_this_instance(tunable: Runtime) -> None:
    raw = tunable.control.dead_letter(b"{bad", outcome="bad_input", stage="parameters", reason="x")
    record = json.loads(raw)
    assert (record["block_id"], record["instance_id"]) == ("target-tunable", "target-tunable-1")
    assert (record["outcome"], record["stage"]) == ("bad_input", "parameters")
    assert record["reason"] == "x"
    assert record_packets(record) == [b"{bad"]


def test_parameters_cannot_grow_past_their_bounds(plain: Runtime) -> None:
    params = plain.context.block_init_parameters
    params.clear()
    try:
        chunk = "x" * (300 * 1024)
        for i in range(3):
            assert plain.control.apply_parameters({f"k{i}": chunk}) == (True, {f"k{i}": chunk})
        before = dict(params)
        with pytest.raises(ParameterLimitError, match="bytes as JSON"):
            plain.control.apply_parameters({"k3": chunk})  # 1.2 MiB in all: refused
        assert params == before
        params.clear()
        many = {f"key{i}": i for i in range(MAX_PARAMETER_KEYS + 1)}
        with pytest.raises(ParameterLimitError, match="keys"):
            plain.control.apply_parameters(many)
        assert params == {}
    finally:
        params.clear()
