"""The lease of one instance on its processing list, and the input's backlog.

Each instance renews a heartbeat key with a TTL and is listed in the block's instance set;
any instance requeues the processing list of one whose key lapsed, to the *front* of the
input, counting the delivery attempt (a hash keyed by the packet's SHA-1, touched only on
that rare path, so the claim pays one HLEN).
"""

from __future__ import annotations

import logging
import time

import redis

from .. import keys
from ._redis import guard, lua

__all__ = ["RedisBacklog", "RedisLease"]

log = logging.getLogger(__name__)


class RedisLease:
    """Heartbeat, takeover of lapsed instances, and hand-back of this instance's claims."""

    def __init__(
        self, client: redis.Redis, block_id: str, instance_id: str, *, ttl_s: float = 10.0
    ) -> None:
        self.client = client
        self.block_id = block_id
        self.instance_id = instance_id
        self.ttl_s = ttl_s
        self._key = keys.lease(block_id, instance_id)
        self._instances = keys.instances(block_id)
        self._requeue = client.register_script(lua("requeue"))

    def renew(self) -> None:
        """Refresh the heartbeat key (the lease keeper calls this every TTL/3)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._key, str(time.time()), px=int(self.ttl_s * 1000))
        pipe.sadd(self._instances, self.instance_id)
        guard(pipe.execute)

    def requeue_lapsed(self) -> int:
        """Requeue the processing lists of the block's instances whose lease has lapsed."""
        moved = 0
        for member in guard(self.client.smembers, self._instances):
            other = member.decode()
            if other == self.instance_id:
                continue
            count = self.requeue(other, force=False, count_attempt=True)
            if count > 0:
                log.warning("requeued %d packets of lapsed instance %s", count, other)
                moved += count
        return moved

    def requeue(self, instance_id: str, *, force: bool, count_attempt: bool) -> int:
        """Hand ``instance_id``'s processing list and the packets it set aside back to the
        input (unless its lease holds and not ``force``); -1 when the lease holds, else how
        many packets moved."""
        script_keys = [
            keys.lease(self.block_id, instance_id),
            keys.processing(self.block_id, instance_id),
            keys.inputs(self.block_id),
            keys.attempts(self.block_id),
            self._instances,
            keys.parked(self.block_id, instance_id),
        ]
        args = [instance_id, "1" if force else "0", "1" if count_attempt else "0"]
        return int(guard(self._requeue, keys=script_keys, args=args))

    def requeue_own(self, *, count_attempt: bool) -> int:
        """Hand everything this instance holds claimed back to the input."""
        return self.requeue(self.instance_id, force=True, count_attempt=count_attempt)

    def release(self) -> None:
        """Give the lease up (after handing back what is claimed)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._key)
        pipe.srem(self._instances, self.instance_id)
        guard(pipe.execute)


class RedisBacklog:
    """Depth and oldest packet of ``{block_id}_inputs``."""

    def __init__(self, client: redis.Redis, block_id: str) -> None:
        self.client = client
        self.input = keys.inputs(block_id)

    def depth(self) -> int:
        """Packets waiting in the input list."""
        return int(guard(self.client.llen, self.input))

    def oldest(self) -> bytes | None:
        """The packet consumed next (the input's right end), or None when it is empty."""
        raw = guard(self.client.lindex, self.input, -1)
        return raw if isinstance(raw, bytes) else None
