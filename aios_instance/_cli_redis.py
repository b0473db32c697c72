"""Which Redis a CLI command uses, where that came from, and one clear line when it cannot
be reached (the URL redacted, the flag or setting it came from, and what to do next)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from ._urls import as_redis_url, redact
from .errors import ConfigError
from .settings import Settings

__all__ = ["checked_client", "normalise_flag", "origin"]


def normalise_flag(value: str | None) -> str | None:
    """``--redis``: host, host:port or a Redis URL, checked like ``AIOS_REDIS_URL``."""
    if value is None:
        return None
    try:
        return as_redis_url(value)
    except ConfigError as exc:
        raise ConfigError(f"--redis: {exc.message}") from None


def origin(flag: str | None, settings: Settings, state_path: Path | None = None) -> str:
    """Where the Redis URL came from, in the user's words."""
    if flag:
        return "--redis"
    if "AIOS_REDIS_URL" in settings.configured:
        return "AIOS_REDIS_URL"
    if settings.redis_configured:
        return "REDIS_HOST/REDIS_PORT"
    return f"the embedded Redis recorded in {state_path}"


def unreachable(url: str, source: str, reason: object) -> ConfigError:
    """The one-line error for a Redis that does not answer."""
    if source.startswith("the embedded"):
        step = (
            "its `aios-instance run` may have crashed: start `aios-instance run FILE.py:Class` here"
        )
    else:
        step = (
            f"start a Redis there, fix {source}, or leave every Redis setting unset "
            "so that `aios-instance run` starts an embedded one"
        )
    return ConfigError(f"cannot reach Redis at {redact(url)} (from {source}): {reason}; {step}")


def checked_client(client: Any, url: str, source: str) -> Any:
    """``client`` (of ``url``) once it answered PING; else :func:`unreachable`'s error."""
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        client.close()
        raise unreachable(url, source, exc) from None
    return client
