"""Tests for aios_instance.routing: the output_ptr grammar, its errors and the parse cache."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aios_instance.errors import AIOSError, ConfigError, RoutingError
from aios_instance.routing import (
    DEFAULT_REDIS_PORT,
    Destination,
    Router,
    destination_from_url,
)

BLOCK = "blk"
DEFAULT = (Destination("redis", "localhost", 6379, "OUTPUT", "", 0),)


def redis_dest(
    host: str, queue: str, port: int = 6379, block_id: str = "", db: int = 0
) -> Destination:
    return Destination("redis", host, port, queue, block_id, db)


def ptr(value: Any) -> str:
    return json.dumps(value)


@pytest.fixture
def router() -> Router:
    return Router(BLOCK, DEFAULT)


# --- Destination ------------------------------------------------------------------------------


def test_destination_is_a_frozen_hashable_value() -> None:
    a = redis_dest("h", "q")
    b = redis_dest("h", "q")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.host = "other"  # type: ignore[misc]


def test_destination_address() -> None:
    assert redis_dest("r1", "q", port=6380).address == "r1:6380"
    assert redis_dest("::1", "q").address == "[::1]:6379"
    assert Destination("grpc", "proxy:50051", 0, "b_inputs", "b").address == "proxy:50051"


def test_destination_password_is_compared_but_not_shown() -> None:
    with_pw = Destination("redis", "h", 1, "q", "", password="s3cret")
    assert "s3cret" not in repr(with_pw)
    assert with_pw != Destination("redis", "h", 1, "q", "")


# --- empty pointers: the default ------------------------------------------------------------------


@pytest.mark.parametrize("pointer", [None, "", " ", "\n\t ", "{}", " {} ", {}])
def test_empty_pointer_gives_default(router: Router, pointer: Any) -> None:
    assert router.route(pointer) is router.default


def test_empty_default_is_allowed() -> None:
    assert Router(BLOCK, ()).route("") == ()


# --- direct form ------------------------------------------------------------------------------


def test_direct_single_output(router: Router) -> None:
    pointer = ptr({"outputs": [{"host": "r1", "port": 6380, "queue_name": "q1", "block_id": "b"}]})
    assert router.route(pointer) == (redis_dest("r1", "q1", 6380, "b"),)


def test_direct_many_outputs_keep_order(router: Router) -> None:
    outputs = [{"host": f"h{i}", "port": 7000 + i, "queue_name": f"q{i}"} for i in range(5)]
    result = router.route(ptr({"outputs": outputs}))
    assert [d.host for d in result] == [f"h{i}" for i in range(5)]
    assert [d.port for d in result] == [7000 + i for i in range(5)]


def test_direct_empty_outputs_means_no_destination(router: Router) -> None:
    assert router.route('{"outputs": []}') == ()


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ({"host": "h", "queue_name": "q"}, redis_dest("h", "q", DEFAULT_REDIS_PORT)),
        ({"host": "h", "port": None, "queue_name": "q"}, redis_dest("h", "q")),
        ({"host": "h", "port": "6390", "queue_name": "q"}, redis_dest("h", "q", 6390)),
        ({"host": "h", "port": " 6390 ", "queue_name": "q"}, redis_dest("h", "q", 6390)),
        ({"host": "h", "port": 65535, "queue_name": "q"}, redis_dest("h", "q", 65535)),
        ({"host": "h", "block_id": "next"}, redis_dest("h", "next_inputs", block_id="next")),
        (
            {"host": "h", "block_id": "n", "queue_name": ""},
            redis_dest("h", "n_inputs", block_id="n"),
        ),
        ({"host": "h", "queue_name": "q", "db": 3}, redis_dest("h", "q", db=3)),
        ({"host": "h", "queue_name": "q", "db": "4"}, redis_dest("h", "q", db=4)),
        ({"host": " h ", "queue_name": "q"}, redis_dest("h", "q")),
        (
            {"host": "h", "queue_name": "q", "extra": [1, {"x": 2}], "tls": True},
            redis_dest("h", "q"),
        ),
    ],
)
def test_output_fields_and_defaults(
    router: Router, output: dict[str, Any], expected: Destination
) -> None:
    assert router.route(ptr({"outputs": [output]})) == (expected,)


def test_port_zero_is_grpc(router: Router) -> None:
    pointer = ptr({"outputs": [{"host": "proxy:50051", "port": 0, "block_id": "llm"}]})
    (dest,) = router.route(pointer)
    assert dest.kind == "grpc"
    assert dest.host == "proxy:50051"
    assert dest.block_id == "llm"
    assert dest.address == "proxy:50051"
    assert (
        router.route(ptr({"outputs": [{"host": "p:1", "port": "0", "block_id": "x"}]}))[0].kind
        == "grpc"
    )


def test_nonzero_port_is_redis(router: Router) -> None:
    assert router.route(ptr({"outputs": [{"host": "h", "queue_name": "q"}]}))[0].kind == "redis"


def test_duplicates_are_removed_first_occurrence_first(router: Router) -> None:
    a = {"host": "a", "queue_name": "q"}
    b = {"host": "b", "queue_name": "q"}
    a_again = {"host": "a", "port": "6379", "queue_name": "q", "ignored": 1}
    result = router.route(ptr({"outputs": [a, b, a_again, b, a]}))
    assert result == (redis_dest("a", "q"), redis_dest("b", "q"))


def test_dict_pointer_is_accepted(router: Router) -> None:
    assert router.route({"outputs": [{"host": "h", "queue_name": "q"}]}) == (redis_dest("h", "q"),)


def test_is_graph_false_is_direct(router: Router) -> None:
    pointer = ptr({"is_graph": False, "outputs": [{"host": "h", "queue_name": "q"}]})
    assert router.route(pointer) == (redis_dest("h", "q"),)


# --- graph form -------------------------------------------------------------------------------


def graph(nodes: dict[str, Any], **extra: Any) -> str:
    return ptr({"is_graph": True, "graph": nodes, **extra})


OWN = {"host": "own", "queue_name": "q_own"}
OTHER = {"host": "other", "queue_name": "q_other"}
FINAL = {"host": "fin", "queue_name": "q_final"}


def test_graph_uses_own_entry(router: Router) -> None:
    pointer = graph(
        {BLOCK: {"outputs": [OWN]}, "someone": {"outputs": [OTHER]}, "final": {"outputs": [FINAL]}}
    )
    assert router.route(pointer) == (redis_dest("own", "q_own"),)


def test_graph_ignores_top_level_outputs(router: Router) -> None:
    pointer = graph({BLOCK: {"outputs": [OWN]}}, outputs=[OTHER])
    assert router.route(pointer) == (redis_dest("own", "q_own"),)


@pytest.mark.parametrize(
    "own_entry",
    [None, {}, {"outputs": []}, []],
    ids=["null", "empty-object", "empty-outputs", "empty-list"],
)
def test_graph_empty_own_entry_falls_back_to_final(router: Router, own_entry: Any) -> None:
    pointer = graph({BLOCK: own_entry, "final": {"outputs": [FINAL]}})
    assert router.route(pointer) == (redis_dest("fin", "q_final"),)


def test_graph_absent_own_entry_falls_back_to_final(router: Router) -> None:
    pointer = graph({"someone": {"outputs": [OTHER]}, "final": {"outputs": [FINAL]}})
    assert router.route(pointer) == (redis_dest("fin", "q_final"),)


@pytest.mark.parametrize(
    "final",
    [{"outputs": [FINAL]}, FINAL, [FINAL], [FINAL, FINAL]],
    ids=["outputs", "single-object", "list", "list-with-duplicate"],
)
def test_graph_final_shapes(router: Router, final: Any) -> None:
    assert router.route(graph({"final": final})) == (redis_dest("fin", "q_final"),)


@pytest.mark.parametrize("own", [OWN, [OWN], {"outputs": [OWN]}], ids=["single", "list", "outputs"])
def test_graph_own_entry_shapes(router: Router, own: Any) -> None:
    assert router.route(graph({BLOCK: own})) == (redis_dest("own", "q_own"),)


def test_graph_entries_depend_on_router_block_id() -> None:
    pointer = graph({"a": {"outputs": [OWN]}, "b": {"outputs": [OTHER]}})
    assert Router("a", ()).route(pointer)[0].host == "own"
    assert Router("b", ()).route(pointer)[0].host == "other"


# --- malformed pointers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pointer", "fragment"),
    [
        ("not json", "not valid JSON"),
        ('{"outputs": [', "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got an array"),
        ('"text"', "expected a JSON object, got a string"),
        ("42", "expected a JSON object, got a number"),
        ("null", "expected a JSON object, got null"),
        ("true", "expected a JSON object, got a boolean"),
        ('{"foo": 1}', "expected an 'outputs' list or 'is_graph': true"),
        ('{"outputs": null}', "outputs must be an array, got null"),
        ('{"outputs": {"host": "h"}}', "outputs must be an array, got an object"),
        ('{"outputs": "h:1"}', "outputs must be an array, got a string"),
        ('{"outputs": [1]}', "outputs[0] must be an object, got a number"),
        ('{"outputs": [{"host": "h", "queue_name": "q"}, "x"]}', "outputs[1] must be an object"),
        ('{"outputs": [{"queue_name": "q"}]}', "outputs[0].host is missing"),
        (
            '{"outputs": [{"host": "", "queue_name": "q"}]}',
            "outputs[0].host must be a non-empty string",
        ),
        (
            '{"outputs": [{"host": "  ", "queue_name": "q"}]}',
            "outputs[0].host must be a non-empty string",
        ),
        (
            '{"outputs": [{"host": 5, "queue_name": "q"}]}',
            "outputs[0].host must be a non-empty string, got 5",
        ),
        (
            '{"outputs": [{"host": "h", "port": "abc", "queue_name": "q"}]}',
            "port must be an integer, got 'abc'",
        ),
        ('{"outputs": [{"host": "h", "port": "", "queue_name": "q"}]}', "port must be an integer"),
        (
            '{"outputs": [{"host": "h", "port": "-1", "queue_name": "q"}]}',
            "port must be an integer",
        ),
        (
            '{"outputs": [{"host": "h", "port": 63.5, "queue_name": "q"}]}',
            "port must be an integer, got 63.5",
        ),
        (
            '{"outputs": [{"host": "h", "port": true, "queue_name": "q"}]}',
            "port must be an integer, got True",
        ),
        ('{"outputs": [{"host": "h", "port": [1], "queue_name": "q"}]}', "port must be an integer"),
        (
            '{"outputs": [{"host": "h", "port": 65536, "queue_name": "q"}]}',
            "port 65536 is out of range (0..65535)",
        ),
        ('{"outputs": [{"host": "h", "port": -1, "queue_name": "q"}]}', "port -1 is out of range"),
        (
            '{"outputs": [{"host": "h", "port": "99999999999999999999999", "queue_name": "q"}]}',
            "port must be",
        ),
        (
            '{"outputs": [{"host": "h", "port": 1e30, "queue_name": "q"}]}',
            "port must be an integer",
        ),
        (
            '{"outputs": [{"host": "h", "db": -2, "queue_name": "q"}]}',
            "db -2 is out of range (>= 0)",
        ),
        ('{"outputs": [{"host": "h", "db": "x", "queue_name": "q"}]}', "db must be an integer"),
        ('{"outputs": [{"host": "h"}]}', "outputs[0] has neither 'queue_name' nor 'block_id'"),
        ('{"outputs": [{"host": "h", "queue_name": 7}]}', "queue_name must be a string, got 7"),
        ('{"outputs": [{"host": "h", "block_id": ["b"]}]}', "block_id must be a string"),
        (
            '{"outputs": [{"host": "p:1", "port": 0, "queue_name": "q"}]}',
            "gRPC output (port 0) and needs a 'block_id'",
        ),
        ('{"is_graph": "yes", "outputs": []}', "'is_graph' must be true or false, got a string"),
        ('{"is_graph": true}', "'graph' must be an object of block ids, got null"),
        ('{"is_graph": true, "graph": []}', "'graph' must be an object of block ids, got an array"),
        ('{"is_graph": true, "graph": {}}', "graph has no entry for block 'blk' and no final"),
        (
            '{"is_graph": true, "graph": {"other": {"outputs": [{"host": "h", "block_id": "b"}]}}}',
            "no final",
        ),
        (
            '{"is_graph": true, "graph": {"blk": {"outputs": []}, "final": {"outputs": []}}}',
            "no final",
        ),
        (
            '{"is_graph": true, "graph": {"blk": 5}}',
            "graph['blk'] must be an object or an array, got a number",
        ),
        (
            '{"is_graph": true, "graph": {"final": "q"}}',
            "graph['final'] must be an object or an array",
        ),
        (
            '{"is_graph": true, "graph": {"blk": {"outputs": 1}}}',
            "graph['blk'].outputs must be an array",
        ),
        (
            '{"is_graph": true, "graph": {"final": {"queue_name": "q"}}}',
            "graph['final'].host is missing",
        ),
        (
            '{"is_graph": true, "graph": {"final": [{"host": "h"}]}}',
            "graph['final'][0] has neither",
        ),
        ("[" * 5000 + "]" * 5000, "not valid JSON"),
        ('"\\ud800"', "not valid JSON"),
    ],
)
def test_malformed_pointer_raises_routing_error(
    router: Router, pointer: str, fragment: str
) -> None:
    with pytest.raises(RoutingError) as info:
        router.route(pointer)
    message = str(info.value)
    assert message.startswith("bad output_ptr: ")
    assert fragment in message
    assert "output_ptr=" in message
    assert isinstance(info.value, AIOSError)


def test_error_quotes_the_pointer(router: Router) -> None:
    pointer = '{"outputs": [{"port": 1}]}'
    with pytest.raises(RoutingError) as info:
        router.route(pointer)
    assert str(info.value).endswith(f"output_ptr={pointer!r}")


def test_error_truncates_long_pointer(router: Router) -> None:
    pointer = ptr({"outputs": [{"port": 1, "pad": "x" * 10_000}]})
    with pytest.raises(RoutingError) as info:
        router.route(pointer)
    message = str(info.value)
    assert len(message) < 400
    assert f"({len(pointer)} chars)" in message


def test_malformed_dict_pointer(router: Router) -> None:
    with pytest.raises(RoutingError, match=r"outputs\[0\]\.host is missing.*output_ptr="):
        router.route({"outputs": [{"port": 1, "obj": object()}]})


@pytest.mark.parametrize("pointer", [b'{"outputs": []}', 42, ["x"], 1.5])
def test_unsupported_pointer_type(router: Router, pointer: Any) -> None:
    with pytest.raises(RoutingError, match="expected a JSON string, a dict or None"):
        router.route(pointer)


# --- cache ------------------------------------------------------------------------------------


def test_same_string_returns_same_object(router: Router) -> None:
    pointer = ptr({"outputs": [{"host": "h", "queue_name": "q"}]})
    first = router.route(pointer)
    assert router.route(pointer) is first
    assert router.route("".join(list(pointer))) is first  # equal, distinct string object
    info = router.cache_info()
    assert (info.hits, info.misses) == (2, 1)


def test_failures_are_cached_but_raise_fresh_errors(router: Router) -> None:
    errors = []
    for _ in range(3):
        with pytest.raises(RoutingError) as info:
            router.route("garbage")
        errors.append(info.value)
    assert router.cache_info().misses == 1
    assert errors[0] is not errors[1]
    assert errors[0].__traceback__ is not errors[1].__traceback__
    assert str(errors[0]) == str(errors[2])


def test_lru_bound_is_respected() -> None:
    router = Router(BLOCK, DEFAULT, cache_size=2)
    pointers = [ptr({"outputs": [{"host": f"h{i}", "queue_name": "q"}]}) for i in range(3)]
    first = router.route(pointers[0])
    router.route(pointers[1])
    router.route(pointers[0])  # refresh: pointers[1] is now the least recently used
    router.route(pointers[2])
    assert router.cache_info().currsize == 2
    assert router.route(pointers[0]) is first
    misses = router.cache_info().misses
    router.route(pointers[1])  # evicted: parsed again
    assert router.cache_info().misses == misses + 1
    for i in range(100):
        router.route(ptr({"outputs": [{"host": f"x{i}", "queue_name": "q"}]}))
    assert router.cache_info().currsize == 2


def test_evicted_pointer_parses_to_an_equal_value() -> None:
    router = Router(BLOCK, DEFAULT, cache_size=1)
    pointer = ptr({"outputs": [{"host": "h", "queue_name": "q"}]})
    first = router.route(pointer)
    router.route(ptr({"outputs": [{"host": "other", "queue_name": "q"}]}))
    again = router.route(pointer)
    assert again == first
    assert again is not first


def test_cache_size_zero_disables_caching() -> None:
    router = Router(BLOCK, DEFAULT, cache_size=0)
    pointer = ptr({"outputs": [{"host": "h", "queue_name": "q"}]})
    assert router.route(pointer) == router.route(pointer)
    assert router.cache_info().currsize == 0


def test_cache_clear(router: Router) -> None:
    router.route('{"outputs": []}')
    router.cache_clear()
    assert router.cache_info().currsize == 0


def test_negative_cache_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        Router(BLOCK, DEFAULT, cache_size=-1)


def test_default_is_stored_as_a_tuple() -> None:
    router = Router(BLOCK, list(DEFAULT))  # type: ignore[arg-type]
    assert router.route(None) == DEFAULT
    assert isinstance(router.default, tuple)
    assert "blk" in repr(router)


def test_router_is_thread_safe() -> None:
    router = Router(BLOCK, DEFAULT, cache_size=8)
    pointers = [ptr({"outputs": [{"host": f"h{i}", "queue_name": "q"}]}) for i in range(32)]
    failures: list[str] = []

    def work(offset: int) -> None:
        for n in range(500):
            i = (n + offset) % len(pointers)
            if router.route(pointers[i])[0].host != f"h{i}":
                failures.append(pointers[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert router.cache_info().currsize <= 8


# --- property tests ---------------------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
field_values = (
    json_values
    | st.integers(min_value=-5, max_value=70_000)
    | st.sampled_from(["6379", "0", "", " 1 ", "h", "h:1", "blk", "final"])
)
outputs = st.dictionaries(
    st.sampled_from(["host", "port", "queue_name", "block_id", "db", "other"]),
    field_values,
    max_size=6,
)
output_lists = st.lists(outputs, max_size=3)
nodes = output_lists | st.fixed_dictionaries({"outputs": output_lists}) | outputs | json_values
pointers = (
    st.fixed_dictionaries({"outputs": output_lists | json_values})
    | st.fixed_dictionaries(
        {
            "is_graph": st.booleans() | json_values,
            "graph": st.dictionaries(st.sampled_from([BLOCK, "final", "other"]), nodes)
            | json_values,
        }
    )
    | json_values
)


def route_or_error(pointer: Any) -> tuple[Destination, ...] | None:
    try:
        return Router(BLOCK, DEFAULT).route(pointer)
    except RoutingError as exc:
        assert str(exc).startswith("bad output_ptr: ")
        return None


@given(st.text())
def test_arbitrary_text_only_raises_routing_error(text: str) -> None:
    route_or_error(text)


@given(pointers)
def test_arbitrary_json_only_raises_routing_error(value: Any) -> None:
    result_from_text = route_or_error(json.dumps(value))
    if isinstance(value, dict):
        assert route_or_error(value) == result_from_text
    if result_from_text is not None:
        assert all(isinstance(dest, Destination) for dest in result_from_text)
        assert len(set(result_from_text)) == len(result_from_text)


valid_outputs = st.fixed_dictionaries(
    {
        "host": st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=8),
        "port": st.integers(min_value=1, max_value=65535) | st.integers(1, 65535).map(str),
        "queue_name": st.text(min_size=1, max_size=8),
    },
    optional={"db": st.integers(0, 15), "block_id": st.text(max_size=5)},
)


@given(st.lists(valid_outputs, max_size=6))
def test_valid_direct_outputs_round_trip(items: list[dict[str, Any]]) -> None:
    result = Router(BLOCK, DEFAULT).route(ptr({"outputs": items}))
    expected = [
        redis_dest(
            o["host"], o["queue_name"], int(o["port"]), o.get("block_id", ""), o.get("db", 0)
        )
        for o in items
    ]
    first: dict[tuple[object, ...], Destination] = {}
    for dest in expected:  # one per list: the first spelling of each place
        first.setdefault(dest.place, dest)
    assert result == tuple(first.values())


# --- destination_from_url ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://r1:6380/2", Destination("redis", "r1", 6380, "OUTPUT", "", 2)),
        ("redis://r1", Destination("redis", "r1", 6379, "OUTPUT", "", 0)),
        ("redis://r1/", Destination("redis", "r1", 6379, "OUTPUT", "", 0)),
        ("redis://", Destination("redis", "localhost", 6379, "OUTPUT", "", 0)),
        ("redis://r1:1/3?db=5", Destination("redis", "r1", 1, "OUTPUT", "", 5)),
        ("redis://[::1]:7000/0", Destination("redis", "::1", 7000, "OUTPUT", "", 0)),
        (" redis://r1:6380 ", Destination("redis", "r1", 6380, "OUTPUT", "", 0)),
    ],
)
def test_destination_from_url(url: str, expected: Destination) -> None:
    assert destination_from_url(url, "OUTPUT") == expected


def test_destination_from_url_password_and_block_id() -> None:
    dest = destination_from_url("redis://:p%40ss@r1:6380/1", "OUTPUT", block_id="me")
    assert dest.password == "p@ss"
    assert dest.block_id == "me"
    assert dest.db == 1
    assert "p@ss" not in repr(dest)
    assert destination_from_url("redis://user:pw@r1", "Q").password == "pw"
    assert destination_from_url("redis://r1", "Q").password is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://r1:6379", "expected the redis:// scheme"),
        ("rediss://r1:6379", "expected the redis:// scheme"),
        ("r1:6379", "expected the redis:// scheme"),
        ("redis://r1:99999", "out of range"),
        ("redis://r1:abc", "bad Redis URL"),
        ("redis://r1:0", "port 0"),
        ("redis://r1/x", "db 'x' is not a number"),
        ("redis://r1?db=-1", "db '-1' is not a number"),
        ("redis://[::1/0", "bad Redis URL"),
    ],
)
def test_destination_from_url_errors(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        destination_from_url(url, "OUTPUT")
    assert fragment in str(info.value)


def test_destination_from_url_needs_queue_name() -> None:
    with pytest.raises(ConfigError, match="no queue name"):
        destination_from_url("redis://r1", "")


def test_destination_from_url_error_hides_password() -> None:
    with pytest.raises(ConfigError) as info:
        destination_from_url("redis://:topsecret@r1:6379/x", "OUTPUT")
    assert "topsecret" not in str(info.value)
    assert "***" in str(info.value)


def test_long_pointers_are_parsed_every_time_not_kept() -> None:
    router = Router(BLOCK, DEFAULT, max_cached_chars=64)
    short = json.dumps({"outputs": [{"host": "h", "port": 1, "queue_name": "q"}]})
    long = json.dumps({"outputs": [{"host": "h", "port": 1, "queue_name": "q" * 200}]})
    assert router.route(short) == router.route(short)
    assert router.route(long)[0].queue_name == "q" * 200
    assert router.cache_info().currsize == 1  # only the short one is kept


def test_one_list_spelt_three_ways_is_pushed_once(router: Router) -> None:
    outputs = [
        {"host": host, "port": 6380, "queue_name": "q"}
        for host in ("localhost", "LOCALHOST.", "127.0.0.1", "[::1]")
    ]
    outputs.append({"host": "127.0.0.1", "port": 6380, "queue_name": "other"})
    found = router.route(ptr({"outputs": outputs}))
    assert [(d.host, d.queue_name) for d in found] == [("localhost", "q"), ("127.0.0.1", "other")]


def test_grpc_outputs_to_two_blocks_behind_one_proxy_are_both_kept(router: Router) -> None:
    outputs = [
        {"host": "proxy:50051", "port": 0, "queue_name": "q", "block_id": name}
        for name in ("a", "b", "a")
    ]
    found = router.route(ptr({"outputs": outputs}))
    assert [d.block_id for d in found] == ["a", "b"]
