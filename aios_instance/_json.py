"""JSON for the runtime's own use: orjson where it can, the stdlib where orjson refuses."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
# orjson turns integers beyond 64 bits into floats; the stdlib keeps them exact.
_LONG_DIGITS = re.compile(r"\d{19,}")
_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def dumps(value: Any) -> str:
    """Serialize to a JSON string; raises TypeError/ValueError for what JSON cannot hold."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:
        # orjson rejects ints beyond 64 bits and some subclasses the stdlib accepts.
        return json.dumps(value, allow_nan=False)


def dumps_bytes(value: Any) -> bytes:
    """Serialize to UTF-8 JSON bytes."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return json.dumps(value, allow_nan=False).encode()


def loads(text: str | bytes) -> Any:
    """Parse JSON exactly (big integers stay integers); raises ValueError on malformed input."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    probe = text if isinstance(text, str) else text.decode(errors="replace")
    if _LONG_DIGITS.search(probe):
        return json.loads(probe)
    return value


def validate(text: str | bytes) -> None:
    """Raise ValueError unless ``text`` is valid JSON (the hot path's check; no value kept)."""
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None


def type_name(value: object) -> str:
    """What ``value`` is in JSON terms, for messages: ``an object``, ``an array``, ``a string``,
    ``a number``, ``a boolean``, ``null``; the Python class name for anything else."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)
