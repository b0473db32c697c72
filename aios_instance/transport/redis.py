"""The reliable Redis source and pooled Redis sinks.

Claiming moves up to K packets from ``{BLOCK_ID}_inputs`` into this instance's processing
list in one atomic round trip (a Lua script); a commit pushes the batch's local outputs and
dead letters and removes the acknowledged packets from the processing list in one MULTI/EXEC
round trip. A packet therefore leaves Redis only after its outputs are in Redis.

Each instance renews a lease key; any instance requeues the processing list of an instance
whose lease lapsed, to the *front* of the input, counting the delivery attempt (a hash keyed
by the packet's SHA-1, touched only on that rare path, so the hot path pays one HLEN). A
requeued packet is claimed on its own, so a packet that crashes the process is isolated and
dead-lettered after ``max_deliveries`` without taking its batch-mates with it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import keys
from ..errors import AckPendingError, TransportError
from ..routing import Destination
from .base import Claim, Sent

__all__ = ["RedisSink", "RedisSource", "connect"]

log = logging.getLogger(__name__)

_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
_MIN_BLOCK_S = 0.005  # the shortest blocking wait sent to Redis (see claim)

# KEYS: input, processing, attempts. ARGV: max count, ahead ('1': first deliveries only).
# Returns {items} or {items, attempt counts} when any packet was ever requeued. A requeued
# packet is claimed alone, and a batch stops before one: if it is a poison packet that kills
# the process, only its own delivery count grows, not its batch-mates'. A claim made ahead
# (while another batch runs) takes no requeued packet at all, for the same reason.
_CLAIM = """
local items = redis.call('RPOP', KEYS[1], ARGV[1])
if not items then return {} end
if redis.call('HLEN', KEYS[3]) == 0 then
  redis.call('LPUSH', KEYS[2], unpack(items))
  return {items}
end
local counts = {}
local take = #items
for i = 1, #items do
  counts[i] = tonumber(redis.call('HGET', KEYS[3], redis.sha1hex(items[i])) or '0')
  if counts[i] > 0 then
    take = (i == 1 and ARGV[2] ~= '1') and 1 or i - 1
    break
  end
end
for i = #items, take + 1, -1 do redis.call('RPUSH', KEYS[1], items[i]) end
if take == 0 then return {} end
local claimed = {unpack(items, 1, take)}
redis.call('LPUSH', KEYS[2], unpack(claimed))
return {claimed, {unpack(counts, 1, take)}}
"""

# KEYS: processing, attempts. ARGV: acknowledged packets.
_ACK = """
for i = 1, #ARGV do redis.call('LREM', KEYS[1], 1, ARGV[i]) end
if redis.call('HLEN', KEYS[2]) > 0 then
  for i = 1, #ARGV do redis.call('HDEL', KEYS[2], redis.sha1hex(ARGV[i])) end
end
return #ARGV
"""

# KEYS: lease, processing, input, attempts, instances. ARGV: instance id, force, count attempt.
# Oldest packets end up rightmost in the input, i.e. next to be consumed.
_REQUEUE = """
if ARGV[2] == '0' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
for i = 1, #items do
  redis.call('RPUSH', KEYS[3], items[i])
  if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[4], redis.sha1hex(items[i]), 1) end
end
redis.call('DEL', KEYS[2])
if ARGV[2] == '0' then redis.call('SREM', KEYS[5], ARGV[1]) end
return #items
"""

# KEYS: processing. ARGV: side ('head' | 'tail'), count, first, last packet of one claim.
# Acknowledges a whole claim by position (no need to send it back), after checking that it
# is where it should be: at the head if it is the latest claim, at the tail if the oldest.
# The claim LPUSHed its first packet first, so at the head the last one is at index 0. 0 when
# the list is not as expected (it was requeued meanwhile): the caller then names the packets.
_TRIM = """
local n = tonumber(ARGV[2])
local function at(i) return redis.call('LINDEX', KEYS[1], i) end
if ARGV[1] == 'tail' then
  if at(-1) == ARGV[3] and at(-n) == ARGV[4] then
    redis.call('LTRIM', KEYS[1], 0, -n - 1)
    return 1
  end
elseif at(0) == ARGV[4] and at(n - 1) == ARGV[3] then
  redis.call('LTRIM', KEYS[1], n, -1)
  return 1
end
return 0
"""

# KEYS: processing, input. ARGV: packets in claim order. Hands them back to the front.
_RELEASE = """
for i = #ARGV, 1, -1 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) > 0 then redis.call('RPUSH', KEYS[2], ARGV[i]) end
end
return #ARGV
"""


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


class RedisSource:
    """At-least-once consumer of ``{block_id}_inputs`` with a leased processing list."""

    def __init__(
        self,
        client: redis.Redis,
        block_id: str,
        instance_id: str,
        *,
        lease_ttl_s: float = 10.0,
        address: tuple[str, int, int] | None = None,
    ) -> None:
        self.client = client
        self.block_id = block_id
        self.instance_id = instance_id
        self.lease_ttl_s = lease_ttl_s
        self.input = keys.inputs(block_id)
        self.processing = keys.processing(block_id, instance_id)
        self._lease = keys.lease(block_id, instance_id)
        self._attempts = keys.attempts(block_id)
        self._instances = keys.instances(block_id)
        self._dead = keys.dead_letters(block_id)
        self._address = address or _address_of(client)
        self._claim = client.register_script(_CLAIM)
        self._ack = client.register_script(_ACK)
        self._requeue = client.register_script(_REQUEUE)
        self._release = client.register_script(_RELEASE)
        self._trim = client.register_script(_TRIM)  # sent by hand (EVALSHA) inside MULTI
        self._pipe_conn: Any = None  # held for send_commit_and_claim/finish

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> int:
        """Take the lease and requeue what a previous run with this instance id left claimed."""
        self.renew_lease()
        _guard(self.client.script_load, _TRIM)  # sent by hand in transactions: cache it now
        left = int(self._run_requeue(self.instance_id, force=True, count_attempt=True))
        if left:
            log.warning("requeued %d packets left claimed by a previous run of %s",
                        left, self.instance_id)  # fmt: skip
        return left

    def renew_lease(self) -> None:
        """Refresh the heartbeat key (called by the lease thread every TTL/3)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._lease, str(time.time()), px=int(self.lease_ttl_s * 1000))
        pipe.sadd(self._instances, self.instance_id)
        _guard(pipe.execute)

    def requeue_orphans(self) -> int:
        """Requeue the processing lists of instances whose lease has lapsed."""
        members = _guard(self.client.smembers, self._instances)
        moved = 0
        for member in members:
            other = member.decode()
            if other != self.instance_id:
                count = self._run_requeue(other, force=False, count_attempt=True)
                if count > 0:
                    log.warning("requeued %d packets of lapsed instance %s", count, other)
                    moved += count
        return moved

    def _run_requeue(self, instance_id: str, *, force: bool, count_attempt: bool) -> int:
        script_keys = [
            keys.lease(self.block_id, instance_id),
            keys.processing(self.block_id, instance_id),
            self.input,
            self._attempts,
            self._instances,
        ]
        args = [instance_id, "1" if force else "0", "1" if count_attempt else "0"]
        return int(_guard(self._requeue, keys=script_keys, args=args))

    def close(self, *, count_attempts: bool = False) -> None:
        """Give up the lease; whatever is still claimed is handed back first.

        ``count_attempts``: after a crash, the packets handed back count as delivered once
        more, so one that crashes the process every time reaches ``max_deliveries``.
        """
        try:
            self._run_requeue(self.instance_id, force=True, count_attempt=count_attempts)
            self._drop_pipe_conn()
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self._lease)
            pipe.srem(self._instances, self.instance_id)
            pipe.execute()
        except (*_ERRORS, TransportError) as exc:
            log.warning("could not release lease of %s: %s", self.instance_id, exc)

    # -- the hot path ----------------------------------------------------------------------
    def claim(self, max_count: int, timeout_s: float) -> list[Claim]:
        """Claim up to max_count packets; block up to timeout_s when the input is empty."""
        claims = self._claim_now(max_count)
        # Redis turns a blocking timeout into whole milliseconds, truncating, and reads 0 as
        # "forever" (0.001 s already blocks forever on Redis 6.2): a wait that short would
        # block until the socket times out, past any batch deadline. Do not block for it.
        if claims or timeout_s < _MIN_BLOCK_S:
            return claims
        wait_s = round(timeout_s, 3)
        # Wait for one packet and claim it in the same round trip: BLMOVE it to the
        # processing list, then (queued behind it on the connection) read its delivery count.
        pipe = self.client.pipeline(transaction=False)
        # (redis-py types the timeout as int; Redis >= 6 takes fractional seconds.)
        pipe.blmove(self.input, self.processing, wait_s, "RIGHT", "LEFT")  # type: ignore[arg-type]
        pipe.hlen(self._attempts)
        raw, requeued_any = _guard(pipe.execute)
        if raw is None:
            return []
        if not requeued_any:  # the common case: nothing was ever requeued, one round trip
            return [Claim(raw, 1)]
        count = _guard(self.client.hget, self._attempts, hashlib.sha1(raw).hexdigest())
        return [Claim(raw, 1 + int(count or 0))]

    def _claim_now(self, max_count: int) -> list[Claim]:
        reply = _guard(
            self._claim, keys=[self.input, self.processing, self._attempts], args=[max_count, 0]
        )
        return _claims_of(reply)

    def send_commit_and_claim(
        self,
        pushes: Mapping[Destination, Sequence[bytes]],
        oldest: Sequence[bytes],
        max_count: int,
    ) -> Sent:
        """Send, without waiting for the reply, one MULTI/EXEC that pushes ``pushes``,
        acknowledges the claim ``oldest`` (its packets in claim order; a checked LTRIM from
        the tail of the processing list, where the claim LPUSHed them first) and claims up
        to ``max_count`` more.

        The hot path's one round trip per batch, overlapped with the processing of the next
        batch: ``finish()`` reads the reply later. At most one may be in flight.
        """
        conn = self._pipe_conn
        if conn is None:
            conn = self._pipe_conn = _guard(self.client.connection_pool.get_connection)
        order: list[Destination | None] = []
        commands: list[tuple[Any, ...]] = [("MULTI",)]
        for dest, payloads in pushes.items():
            if payloads:
                commands.append(("LPUSH", dest.queue_name, *payloads))
                order.append(dest)
        if oldest:
            commands.append(("EVALSHA", self._trim.sha, 1, *self._trim_args("tail", oldest)))
        claim_keys = (self.input, self.processing, self._attempts)
        commands.append(("EVALSHA", self._claim.sha, 3, *claim_keys, max_count, 1))
        commands.append(("EXEC",))
        try:
            conn.send_packed_command(conn.pack_commands(commands))
        except _ERRORS as exc:
            self._drop_pipe_conn()
            raise TransportError(f"redis unreachable: {exc}") from exc
        return Sent(tuple(order), len(commands) - 2, tuple(oldest))

    def finish(self, sent: Sent) -> tuple[Mapping[Destination, str], list[Claim]]:
        """Read the reply of ``send_commit_and_claim``: rejected destinations and the claim.

        Raises TransportError when the outcome is unknown (the connection failed: the commit
        and the claim may or may not have happened).
        """
        conn = self._pipe_conn
        if conn is None:
            raise TransportError("no commit in flight on this source")
        try:
            for _ in range(sent.queued + 1):  # +OK for MULTI, +QUEUED for each command
                conn.read_response()
            replies = conn.read_response()
        except (*_ERRORS, redis.ResponseError) as exc:
            self._drop_pipe_conn()
            raise TransportError(f"commit outcome unknown: {exc}") from exc
        pushed = len(sent.order)
        rejected = _rejections(sent.order, replies[:pushed], transaction=True)
        claims: list[Claim] = []
        if isinstance(replies[-1], Exception):
            # NOSCRIPT (the server restarted): the commit took effect; the next claim loads it.
            log.info("claim script not cached on the server: %s", replies[-1])
        else:
            claims = _claims_of(replies[-1])
        if sent.acked and not self._check_trim(replies[pushed], sent.acked):
            raise AckPendingError("acknowledgement not sent", sent.acked, claims, rejected)
        return rejected, claims

    def requeue_own(self) -> int:
        """Hand everything this instance holds claimed back to the front of the input (not
        counted as a delivery): after a commit whose outcome is unknown."""
        return self._run_requeue(self.instance_id, force=True, count_attempt=False)

    def _drop_pipe_conn(self) -> None:
        conn, self._pipe_conn = self._pipe_conn, None
        if conn is not None:
            conn.disconnect()
            self.client.connection_pool.release(conn)

    def is_local(self, destination: Destination) -> bool:
        """Outputs to this source's own Redis ride in the commit's transaction."""
        return destination.kind == "redis" and _address_of_dest(destination) == self._address

    def commit(
        self,
        pushes: Mapping[Destination, Sequence[bytes]],
        acks: Sequence[bytes],
        dead: Sequence[bytes],
        *,
        latest: Sequence[bytes] = (),
        oldest: Sequence[bytes] = (),
    ) -> Mapping[Destination, str]:
        """Local pushes + dead letters + acks in one MULTI/EXEC round trip.

        ``latest``/``oldest``: a whole claim (its packets in claim order) acknowledged by a
        checked LTRIM at the head/tail of the processing list, instead of sending every
        packet back for LREM: half the bytes and a third of the server's work. Returns the
        destinations whose LPUSH the server rejected (``WRONGTYPE``); everything else in the
        transaction took effect. Raises TransportError when nothing did.
        """
        pipe = self.client.pipeline(transaction=True)
        order: list[Destination | None] = []
        for dest, payloads in pushes.items():
            if payloads:
                pipe.lpush(dest.queue_name, *payloads)
                order.append(dest)
        if dead:
            pipe.lpush(self._dead, *dead)
            order.append(None)
        if acks:
            self._ack(keys=[self.processing, self._attempts], args=list(acks), client=pipe)
            order.append(None)
        if latest and oldest:
            raise ValueError("a commit acknowledges the latest claim or the oldest, not both")
        claim, side = (latest, "head") if latest else (oldest, "tail")
        if claim:
            pipe.evalsha(self._trim.sha, 1, *self._trim_args(side, claim))
        if not order and not claim:
            return {}
        replies = _guard(pipe.execute, raise_on_error=False)
        rejected = _rejections(order, replies[: len(order)], transaction=True)
        if claim and not self._check_trim(replies[-1], claim):
            raise AckPendingError("acknowledgement not sent", tuple(claim), [], rejected)
        return rejected

    def _trim_args(self, side: str, claim: Sequence[bytes]) -> tuple[Any, ...]:
        return (self.processing, side, len(claim), claim[0], claim[-1])

    def _check_trim(self, reply: Any, claim: Sequence[bytes]) -> bool:
        """After a trim: when it did not apply (the list was requeued meanwhile, or the
        script was flushed), acknowledge the claim's packets by name instead. False when
        that failed too: the commit took effect, the acknowledgement is still due."""
        if reply == 1:
            return True
        if reply != 0:
            log.warning("acknowledging a claim by position failed (%s); naming it", reply)
        try:
            if isinstance(reply, redis.exceptions.NoScriptError):
                _guard(self.client.script_load, _TRIM)
            _guard(self._ack, keys=[self.processing, self._attempts], args=list(claim))
        except TransportError as exc:
            log.warning("could not acknowledge %d packets by name: %s", len(claim), exc)
            return False
        return True

    def release(self, raws: Sequence[bytes]) -> None:
        """Hand claimed packets back to the front of the input, in their original order."""
        if raws:
            _guard(self._release, keys=[self.processing, self.input], args=list(raws))

    # -- observability ---------------------------------------------------------------------
    def depth(self) -> int:
        """Packets waiting in the input list."""
        return int(_guard(self.client.llen, self.input))


class RedisSink:
    """Pushes to lists on one Redis server over one pooled client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def push(self, batches: Mapping[Destination, Sequence[bytes]]) -> Mapping[Destination, str]:
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
        replies = _guard(pipe.execute, raise_on_error=False)
        return _rejections(order, replies, transaction=False)

    def close(self) -> None:
        """Disconnect the pool."""
        self.client.close()


def redis_url_of(dest: Destination) -> str:
    """The redis:// URL of a destination's server (IPv6 hosts bracketed)."""
    auth = f":{quote(dest.password, safe='')}@" if dest.password else ""
    return f"redis://{auth}{dest.address}/{dest.db}"


def _claims_of(reply: Any) -> list[Claim]:
    """The claim script's reply: {items} or {items, attempt counts}."""
    if not reply:
        return []
    items = reply[0]
    if len(reply) == 1:
        return [Claim(item, 1) for item in items]
    return [Claim(item, 1 + int(n)) for item, n in zip(items, reply[1], strict=True)]


def _address_of(client: redis.Redis) -> tuple[str, int, int]:
    kw = client.connection_pool.connection_kwargs
    return (str(kw.get("host", "localhost")), int(kw.get("port", 6379)), int(kw.get("db", 0)))


def _address_of_dest(dest: Destination) -> tuple[str, int, int]:
    return (dest.host, dest.port, dest.db)


def _rejections(
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


def _guard(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a Redis operation, turning connection-level failures and refusals of a whole
    command (OOM, READONLY, EXECABORT: nothing took effect) into TransportError."""
    try:
        return fn(*args, **kwargs)
    except _ERRORS as exc:
        raise TransportError(f"redis unreachable: {exc}") from exc
    except redis.ResponseError as exc:
        raise TransportError(f"redis refused the command: {exc}") from exc
