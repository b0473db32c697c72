"""_json: one JSON codec (orjson) and the type names messages use."""

from __future__ import annotations

import pytest

from aios_instance import _json


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ({}, "an object"),
        ([], "an array"),
        ("x", "a string"),
        (1, "a number"),
        (1.5, "a number"),
        (True, "a boolean"),
        (None, "null"),
        (b"x", "bytes"),
    ],
)
def test_type_names_say_what_a_value_is_in_json_terms(value: object, name: str) -> None:
    assert _json.type_name(value) == name


def test_round_trip_and_compact_output() -> None:
    value = {"a": [1, 2.5, None, True], "s": "é"}
    assert _json.loads(_json.dumps(value)) == value
    assert _json.dumps_bytes({"a": 1}) == b'{"a":1}'


def test_invalid_json_is_reported() -> None:
    _json.validate('{"ok": true}')
    with pytest.raises(ValueError):
        _json.validate("{bad")
