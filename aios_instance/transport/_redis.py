"""Redis plumbing shared by the source, the lease and the sinks: connections, the Lua
scripts (``lua/*.lua``), and the mapping of redis-py's errors onto ``TransportError``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import TransportError
from ..routing import Destination

__all__ = ["ERRORS", "connect", "guard", "lua", "rejections"]

log = logging.getLogger(__name__)

ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def connect(url: str, *, socket_timeout_s: float = 5.0, **kwargs: Any) -> redis.Redis:
    """A pooled client with explicit RESP2 and short timeouts (no per-command PING).

    redis-py's own retries are off (its default retries a refused connection for seconds):
    the worker owns retry and backoff, so a down endpoint fails fast and is parked.
    """
    kwargs.setdefault("retry", Retry(NoBackoff(), 0))
    return redis.Redis.from_url(
        url,
        protocol=2,
        socket_connect_timeout=2.0,
        socket_timeout=socket_timeout_s,
        health_check_interval=0,
        decode_responses=False,
        **kwargs,
    )


@cache
def lua(name: str) -> str:
    """The source of the script ``lua/<name>.lua`` shipped with the package."""
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text("utf-8")


def guard(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a Redis operation, turning connection-level failures and refusals of a whole
    command (OOM, READONLY, EXECABORT: nothing took effect) into TransportError."""
    try:
        return fn(*args, **kwargs)
    except ERRORS as exc:
        raise TransportError(f"redis unreachable: {exc}") from exc
    except redis.ResponseError as exc:
        raise TransportError(f"redis refused the command: {exc}") from exc


def rejections(
    order: Sequence[Destination | None], replies: Sequence[Any], *, transaction: bool
) -> dict[Destination, str]:
    """Destinations whose LPUSH failed and cannot succeed on retry (``WRONGTYPE``).

    Inside EXEC every error is such a runtime error (refusals like OOM abort the whole
    transaction, raised by ``execute``). In a plain pipeline any other error (OOM, READONLY)
    is transient and raises TransportError, so the batch is retried.
    """
    rejected: dict[Destination, str] = {}
    for dest, reply in zip(order, replies, strict=True):
        if not isinstance(reply, Exception):
            continue
        if dest is None:
            log.error("a dead-letter push or an acknowledgement failed: %s", reply)
        elif transaction or str(reply).startswith("WRONGTYPE"):
            rejected[dest] = str(reply)
        else:
            raise TransportError(f"redis refused a push: {reply}")
    return rejected
