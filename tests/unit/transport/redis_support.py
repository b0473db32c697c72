"""What the Redis transport tests share: a block id, a source on a test server, and an
input filled the way producers fill it."""

from __future__ import annotations

import redis

from aios_instance import keys
from aios_instance.embedded import EmbeddedRedis
from aios_instance.transport.redis import RedisSource, connect

BLOCK = "tb"


def make_source(server: EmbeddedRedis, instance: str = "i1", ttl_s: float = 10.0) -> RedisSource:
    """A Redis source of BLOCK on ``server``."""
    return RedisSource(connect(server.url), BLOCK, instance, lease_ttl_s=ttl_s)


def fill(client: redis.Redis, n: int, prefix: str = "p") -> list[bytes]:
    """LPUSH p0..p{n-1} one by one, as producers do (p0 is the oldest)."""
    items = [f"{prefix}{i}".encode() for i in range(n)]
    for item in items:
        client.lpush(keys.inputs(BLOCK), item)
    return items
