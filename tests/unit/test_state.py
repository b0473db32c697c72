"""State dictionaries: both backends share one contract; StateDict lives in a Redis hash."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from aios_instance import state
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.errors import ConfigError, TransportError
from aios_instance.state import MemoryStateDict, StateDict

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture(params=["memory", "redis"])
def sd(request: pytest.FixtureRequest) -> MemoryStateDict | StateDict:
    """A fresh, empty state dict of each kind."""
    if request.param == "memory":
        return MemoryStateDict("test")
    client: redis.Redis = request.getfixturevalue("redis_client")
    return StateDict("test", client)


@pytest.fixture
def default_redis() -> Iterator[None]:
    """Restore the process-wide default client after the test."""
    before = state.get_default_redis()
    yield
    state.set_default_redis(before)


def _same(a: Any, b: Any) -> bool:
    """Equal with identical types all the way down (so 1 != 1.0 and True != 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


VALUES: list[Any] = [
    0,
    -7,
    2**63 - 1,
    1.0,
    0.1,
    -0.0,
    True,
    False,
    None,
    "",
    "ünï",
    [],
    {},
    [1, 1.0, [True]],
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_round_trip_with_their_types(sd: MemoryStateDict | StateDict, value: Any) -> None:
    sd["k"] = value
    assert _same(sd["k"], value)
    assert _same(sd.get("k"), value)


def test_nested_document_round_trips(sd: MemoryStateDict | StateDict) -> None:
    doc: dict[str, Any] = {
        "n": 1,
        "f": 2.0,
        "b": False,
        "none": None,
        "l": [{"x": [1.5, "s"]}],
        "d": {"e": {}},
    }
    sd["doc"] = doc
    assert _same(sd["doc"], doc)


def test_mapping_api(sd: MemoryStateDict | StateDict) -> None:
    sd.update({"a": 1, "b": 2.5}, c="three")
    sd.update([("d", None)])
    not_a_str: object = 1
    assert len(sd) == 4 and "a" in sd and "zz" not in sd and not_a_str not in sd
    assert sorted(sd) == ["a", "b", "c", "d"]
    assert sorted(sd.keys()) == ["a", "b", "c", "d"]
    assert dict(sd.items()) == {"a": 1, "b": 2.5, "c": "three", "d": None}
    assert sorted(map(str, sd.values())) == ["1", "2.5", "None", "three"]
    assert sd.to_dict() == {"a": 1, "b": 2.5, "c": "three", "d": None}
    assert cast(object, sd) == {"a": 1, "b": 2.5, "c": "three", "d": None}
    assert sd.get("missing") is None and sd.get("missing", 5) == 5
    del sd["d"]
    with pytest.raises(KeyError):
        del sd["d"]
    with pytest.raises(KeyError):
        sd["d"]
    sd.clear()
    assert len(sd) == 0 and sd.to_dict() == {} and list(sd) == []


def test_pop_and_setdefault(sd: MemoryStateDict | StateDict) -> None:
    sd["a"] = [1]
    assert sd.pop("a") == [1]
    assert "a" not in sd
    assert sd.pop("a", "dflt") == "dflt"
    assert sd.pop("a", None) is None
    with pytest.raises(KeyError):
        sd.pop("a")
    assert sd.setdefault("s", {"n": 1}) == {"n": 1}
    assert sd.setdefault("s", {"n": 2}) == {"n": 1}
    assert sd.setdefault("none") is None and "none" in sd


def test_increment(sd: MemoryStateDict | StateDict) -> None:
    assert sd.increment("n") == 1
    assert sd.increment("n", 41) == 42
    assert _same(sd["n"], 42)
    sd["f"] = 1.0
    with pytest.raises(TypeError, match="'f'"):
        sd.increment("f")
    assert _same(sd["f"], 1.0)


def test_returned_and_stored_values_are_copies(sd: MemoryStateDict | StateDict) -> None:
    original = {"items": [1, 2]}
    sd["k"] = original
    original["items"].append(3)
    got = sd["k"]
    got["items"].append(99)
    assert sd["k"] == {"items": [1, 2]}


@pytest.mark.parametrize(
    "value",
    [
        b"bytes",
        {1, 2},
        object(),
        datetime.datetime(2024, 1, 1),
        {1: "int key"},
        {"a": {2: 0}},
        float("nan"),
        [float("inf")],
        {"x": -float("inf")},
        2**64,
    ],
    ids=repr,
)
def test_non_json_values_are_refused(sd: MemoryStateDict | StateDict, value: Any) -> None:
    with pytest.raises(TypeError, match="state values"):
        sd["k"] = value
    assert "k" not in sd


def test_non_str_keys_are_refused(sd: MemoryStateDict | StateDict) -> None:
    with pytest.raises(TypeError, match="keys must be str"):
        sd[1] = "x"  # type: ignore[index]
    with pytest.raises(TypeError, match="keys must be str"):
        sd[b"k"]  # type: ignore[index]
    with pytest.raises(TypeError, match="keys must be str"):
        sd.update({2: 0})  # type: ignore[arg-type]


def test_update_stores_nothing_when_one_value_is_bad(sd: MemoryStateDict | StateDict) -> None:
    with pytest.raises(TypeError):
        sd.update({"good": 1, "bad": {1, 2}})
    assert len(sd) == 0


def test_documented_conversions(sd: MemoryStateDict | StateDict) -> None:
    sd["t"] = (1, 2)
    assert sd["t"] == [1, 2]


@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_memory_round_trip_property(value: Any) -> None:
    sd = MemoryStateDict()
    sd["v"] = value
    assert _same(sd["v"], value)


@settings(max_examples=75, deadline=None)
@given(value=json_values, key=st.text())
def test_redis_round_trip_property(redis_server: EmbeddedRedis, value: Any, key: str) -> None:
    client = redis.Redis.from_url(redis_server.url, protocol=2)
    try:
        sd = StateDict("prop", client)
        sd[key] = value
        assert _same(sd[key], value)
        assert _same(sd.to_dict()[key], value)
    finally:
        client.delete("aios:state:prop")
        client.close()


def test_redis_layout_is_one_hash_of_json(redis_client: redis.Redis) -> None:
    sd = StateDict("layout", redis_client)
    sd["f"] = 1.0
    sd["d"] = {"a": [True, None]}
    assert redis_client.type("aios:state:layout") == b"hash"
    assert redis_client.hgetall("aios:state:layout") == {b"f": b"1.0", b"d": b'{"a":[true,null]}'}


def test_same_namespace_is_shared_and_others_are_separate(redis_client: redis.Redis) -> None:
    StateDict("shared", redis_client)["x"] = 1
    assert StateDict("shared", redis_client)["x"] == 1
    assert "x" not in StateDict("other", redis_client)


def test_state_written_elsewhere_is_visible(redis_client: redis.Redis) -> None:
    redis_client.hset("aios:state:ext", "n", b"7")
    redis_client.hset("aios:state:ext", "bad", b"not json")
    sd = StateDict("ext", redis_client)
    assert sd["n"] == 7
    with pytest.raises(ValueError):
        sd["bad"]


def test_clients_from_decode_responses_true_work(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url, protocol=2, decode_responses=True)
    try:
        sd = StateDict("decoded", client)
        sd.clear()
        sd["a"] = {"b": 1.5}
        assert sd["a"] == {"b": 1.5} and list(sd) == ["a"] and sd.to_dict() == {"a": {"b": 1.5}}
        sd.clear()
    finally:
        client.close()


def test_url_constructor(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    sd = StateDict("byurl", url=redis_server.url)
    try:
        sd["v"] = 3
        assert redis_client.hget("aios:state:byurl", "v") == b"3"
        kwargs = sd.redis.connection_pool.connection_kwargs
        assert kwargs["protocol"] == 2 and kwargs["decode_responses"] is False
    finally:
        sd.close()


@pytest.mark.usefixtures("default_redis")
def test_default_client_is_used_when_none_is_given(redis_client: redis.Redis) -> None:
    state.set_default_redis(redis_client)
    StateDict("dflt")["a"] = 1
    assert redis_client.hget("aios:state:dflt", "a") == b"1"


@pytest.mark.usefixtures("default_redis")
def test_no_client_configured_is_a_config_error() -> None:
    state.set_default_redis(None)
    with pytest.raises(ConfigError, match="set_default_redis"):
        StateDict("nowhere")


def test_namespace_is_required(redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="namespace"):
        StateDict("", redis_client)


def test_unreachable_redis_raises_transport_error() -> None:
    client = redis.Redis(port=free_port(), protocol=2, retry=Retry(NoBackoff(), 0))
    sd = StateDict("down", client)
    with pytest.raises(TransportError, match="down"):
        sd["a"] = 1
    with pytest.raises(TransportError):
        len(sd)
    client.close()


def test_concurrent_increments_are_atomic(sd: MemoryStateDict | StateDict) -> None:
    def work() -> None:
        for _ in range(200):
            sd.increment("n")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sd["n"] == 800


def test_repr_names_the_namespace(sd: MemoryStateDict | StateDict) -> None:
    sd["a"] = 1
    assert "namespace='test'" in repr(sd) and "keys=1" in repr(sd)
