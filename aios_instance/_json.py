"""JSON for the runtime's own use: orjson where it can, the stdlib where orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


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
    """Parse JSON; raises ValueError on malformed input."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
