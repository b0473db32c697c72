"""Redis transport: the reliable source (``redis_source``), the lease (``redis_lease``) and
pooled sinks that push to lists on any Redis server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis

from .._urls import redis_url
from ..routing import Destination
from ._redis import connect, guard, rejections
from .base import Rejected
from .redis_lease import RedisBacklog, RedisLease
from .redis_source import RedisSource

__all__ = ["RedisBacklog", "RedisLease", "RedisSink", "RedisSource", "connect", "redis_url_of"]


class RedisSink:
    """Pushes to lists on one Redis server over one pooled client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def push(self, batches: Mapping[Destination, Sequence[bytes]]) -> Rejected:
        """One pipelined round trip: a variadic LPUSH per destination list.

        Returns the destinations the server rejected (``WRONGTYPE``); the rest were pushed.
        """
        pipe = self.client.pipeline(transaction=False)
        order: list[Destination | None] = []
        for dest, payloads in batches.items():
            if payloads:
                pipe.lpush(dest.queue_name, *payloads)
                order.append(dest)
        if not order:
            return {}
        replies = guard(pipe.execute, raise_on_error=False)
        return rejections(order, replies, transaction=False)

    def close(self) -> None:
        """Disconnect the pool."""
        self.client.close()


def redis_url_of(dest: Destination) -> str:
    """The redis:// URL of a destination's server (IPv6 hosts bracketed)."""
    return redis_url(dest.host, dest.port, dest.db, dest.password or "")
