"""Parsers of setting values: each takes the variable's text and returns the value, or raises
``ValueError`` with what a valid value looks like (``settings.py`` names the variable)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from . import _json
from ._urls import SCHEMES, as_redis_url
from .errors import ConfigError


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _float_nonneg(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError("must be a finite number >= 0")
    return value


def _float_pos(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a finite number > 0")
    return value


def _redis_url(text: str) -> str:
    if not text.startswith(tuple(f"{scheme}://" for scheme in SCHEMES)):
        raise ValueError("must be a URL starting with redis://, rediss:// or unix://")
    try:
        as_redis_url(text)  # the port, for one
    except ConfigError as exc:
        raise ValueError(exc.message) from None
    return text


def _redis_address(text: str) -> str:
    """host, host:port or a Redis URL (checked now, so a typo fails at start)."""
    try:
        as_redis_url(text)
    except ConfigError as exc:
        raise ValueError(exc.message) from None
    return text


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true/false")


def _json_object(text: str) -> dict[str, Any]:
    value = _json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


_BLOCK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")


def _block_id(text: str) -> str:
    """A block id is part of key and file names: a safe character set, no ``..``."""
    if not _BLOCK_ID.fullmatch(text) or ".." in text:
        raise ValueError(
            "use 1-200 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
        )
    return text


def _str(text: str) -> str:
    return text


def _control_auth(text: str) -> str:
    mode = text.strip().lower()
    if mode not in ("auto", "none"):
        raise ValueError("must be auto or none")
    return mode


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


_PORT = _int(0, 65535)  # 0: the service is disabled
