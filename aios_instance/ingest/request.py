"""Reading a job out of an HTTP body or a WebSocket message: the envelope
``{"data", "session_id"?, "seq_no"?, "ts"?}`` (``data`` a JSON object, array or string), or a
``multipart/form-data`` body with those fields and files, into an ``AIOSPacket``.
Anything else is a ``BadRequestError`` naming what is wrong."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from .. import _json
from ..files import FileInfo
from ..packet import AIOSPacket

__all__ = ["FIELDS", "BadRequestError", "form_fields", "packet_from", "parse_json"]

FIELDS = ("data", "session_id", "seq_no", "ts")
_SHAPE = '{"data": <object or string>, "session_id"?: <string>, "seq_no"?: <int>, "ts"?: <number>}'


class BadRequestError(ValueError):
    """A body or message that is not a job (the message says why)."""


def packet_from(fields: Mapping[str, Any], files: tuple[FileInfo, ...] = ()) -> AIOSPacket:
    """The packet a job's fields describe (a fresh session id when none is given)."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise BadRequestError(f"unknown field(s) {', '.join(unknown)}; a job is {_SHAPE}")
    if "data" not in fields:
        raise BadRequestError(f"'data' is missing; a job is {_SHAPE}")
    return AIOSPacket(
        session_id=_session_id(fields.get("session_id")),
        seq_no=_seq_no(fields.get("seq_no")),
        data=_data(fields["data"]),
        ts=_ts(fields.get("ts")),
        files=files,
    )


def _data(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return _json.dumps(value)
    raise BadRequestError(
        f"'data' must be a JSON object, array or string, not {_json.type_name(value)}"
    )


def _session_id(value: Any) -> str:
    if value is None or value == "":
        return uuid.uuid4().hex
    if not isinstance(value, str) or len(value) > 256:
        raise BadRequestError("'session_id' must be a string of at most 256 characters")
    return value


def _seq_no(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)  # a multipart field is text
    if type(value) is not int or not -(2**31) <= value < 2**31:
        raise BadRequestError("'seq_no' must be a 32-bit integer")
    return value


def _ts(value: Any) -> float:
    if value is None:
        return time.time()
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BadRequestError("'ts' must be a number (seconds since the epoch)") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequestError("'ts' must be a number (seconds since the epoch)")
    return float(value)


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON body as the job's fields."""
    try:
        value = _json.loads(body)
    except ValueError as exc:
        raise BadRequestError(f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequestError(f"body must be a JSON object {_SHAPE}, got {_json.type_name(value)}")
    return value


def form_fields(items: list[tuple[str, Any]]) -> tuple[dict[str, Any], tuple[FileInfo, ...]]:
    """A multipart form's text fields (``data`` is the packet's data as sent) and its files
    (each a ``FileInfo`` whose metadata says the field, file name and content type)."""
    fields: dict[str, Any] = {}
    files: list[FileInfo] = []
    for name, value in items:
        if isinstance(value, str):
            fields[name] = value
            continue
        meta = {"field": name, "filename": value.filename, "content_type": value.content_type}
        files.append(FileInfo(metadata=_json.dumps(meta), file_data=value.file.read()))
    # ``data`` is text in a form: the block gets it as it was sent (JSON or not).
    return fields, tuple(files)
