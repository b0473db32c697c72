"""The reliable Redis source: claims move packets into a leased processing list; a commit
pushes local outputs and dead letters and acknowledges in one MULTI/EXEC round trip, so a
packet leaves Redis only after its outputs are in Redis.

Two optimisations hide behind ``claim``/``commit``:

- **Acknowledgement by position.** A commit that acknowledges a whole claim (the oldest
  held, or the latest) trims it off the processing list after checking its ends, instead of
  sending every packet back for LREM: half the bytes, a third of the server's work.
- **Claiming ahead.** A commit that acknowledges the oldest claim while nothing else the
  caller was given is held is *sent* together with the claim of the next batch, and its
  reply is read at the next commit: the round trip overlaps the processing of the batch
  claimed before. At most one commit is in flight; every call reads its reply first, and
  its ``settled`` callback runs before anything else is reported.

A requeued packet is claimed on its own, and a claim made ahead takes none (see
``lua/claim.lua``): a packet that crashes the process is isolated and dead-lettered after
``max_deliveries`` without taking its batch-mates with it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import redis

from .. import keys
from .._urls import same_host
from ..errors import TransportError
from ..routing import Destination
from ._redis import ERRORS, guard, lua, rejections
from .base import Claim, Commit, Rejected
from .held import HeldClaims
from .redis_lease import RedisBacklog, RedisLease

__all__ = ["RedisSource"]

log = logging.getLogger(__name__)

_MIN_BLOCK_S = 0.005  # the shortest blocking wait sent to Redis (see claim)


@dataclass(eq=False, slots=True)
class _InFlight:
    """A commit sent with the next claim, its reply not read yet."""

    queued: int  # commands inside MULTI
    order: tuple[Destination | None, ...]  # what each push/record reply is about
    acked: list[bytes]  # the claim it acknowledges by position
    want: int  # the size of the claim it makes
    settled: Callable[[Rejected], None]


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
        self.input = keys.inputs(block_id)
        self.processing = keys.processing(block_id, instance_id)
        self.parked = keys.parked(block_id, instance_id)  # set aside (see Commit.set_aside)
        self.lease = RedisLease(client, block_id, instance_id, ttl_s=lease_ttl_s)
        self.backlog = RedisBacklog(client, block_id)
        self._attempts = keys.attempts(block_id)
        self._dead = keys.dead_letters(block_id)
        self._address = (
            _address_of(client) if address is None else (same_host(address[0]), *address[1:])
        )
        self._claim = client.register_script(lua("claim"))
        self._ack = client.register_script(lua("ack"))
        self._release = client.register_script(lua("release"))
        self._trim = client.register_script(lua("trim"))  # sent by hand inside MULTI
        self._conn: Any = None  # the connection a commit in flight was sent on
        self._in_flight: _InFlight | None = None
        self._claims = HeldClaims()
        self._want = 1  # the size of the last claim asked for
        self._ack_due: list[bytes] = []  # committed, the acknowledgement not yet through
        self._aside: set[bytes] = set()  # set aside, not acknowledged yet (by name, later)
        self._claiming = True  # False once the caller drains: nothing is claimed ahead
        self._requeue_due = False  # a reply was lost: hand everything back first

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> int:
        """Take the lease and requeue what a previous run with this instance id left claimed
        (this object's own claims included: it starts afresh)."""
        self._drop_conn()  # a reply still due there is about claims handed back below
        self._in_flight = None
        self._claims.clear()
        self._aside.clear()
        self._ack_due, self._requeue_due = [], False
        self.lease.renew()
        guard(self.client.script_load, lua("trim"))  # sent by hand in MULTI: cache it now
        left = self.lease.requeue_own(count_attempt=True)
        if left:
            log.warning("requeued %d packets left by a previous run", left)
        return left

    def stop_claiming(self) -> None:
        """No claim will follow: claim nothing ahead from now on, and hand back at the next
        commit what was claimed ahead. Only sets a flag (safe from a signal handler)."""
        self._claiming = False

    def close(self, *, count_attempts: bool = False) -> None:
        """Give up the lease; whatever is still claimed is handed back first (a batch
        claimed ahead, never seen by the block, without counting a delivery)."""
        self._claiming = False
        try:
            self._settle()
        except TransportError as exc:  # the requeue below hands back what it was about
            log.warning("the last commit's outcome is unknown: %s", exc)
        try:
            self._flush_acks()  # committed: not to be handed back and output again
            self._release_ahead()
            self.lease.requeue_own(count_attempt=count_attempts)
            self._requeue_due = False
            self._claims.clear()
            self._aside.clear()
            self._drop_conn()
            self.lease.release()
        except (*ERRORS, TransportError) as exc:
            log.warning("could not release lease of %s: %s", self.instance_id, exc)

    # -- claim -----------------------------------------------------------------------------
    def claim(self, max_count: int, timeout_s: float) -> list[Claim]:
        """Claim up to max_count packets; block up to timeout_s when the input is empty."""
        self._want = max_count
        ahead = self._claims.take_ahead()  # claimed with a commit whose reply is not read
        if ahead:
            return ahead
        self._settle()
        ahead = self._claims.take_ahead()
        if ahead:
            return ahead
        self._recover()
        try:
            claims = self._claim_now(max_count, timeout_s)
        except TransportError:
            self._requeue_due = True  # it may have moved packets whose reply never came
            raise
        self._claims.add(claims, max_count)
        if claims and self._may_claim_ahead():
            self._send_with_claim(Commit(), [])  # the next batch, while this one runs
        return claims

    def _claim_now(self, max_count: int, timeout_s: float) -> list[Claim]:
        reply = guard(
            self._claim, keys=[self.input, self.processing, self._attempts], args=[max_count, 0]
        )
        claims = _claims_of(reply)
        # Redis turns a blocking timeout into whole milliseconds, truncating, and reads 0 as
        # "forever" (0.001 s already blocks forever on Redis 6.2): a wait that short would
        # block until the socket times out, past any batch deadline. Do not block for it.
        if claims or timeout_s < _MIN_BLOCK_S:
            return claims
        # Wait for one packet and claim it in the same round trip: BLMOVE it to the
        # processing list, then (queued behind it on the connection) read its delivery count.
        pipe = self.client.pipeline(transaction=False)
        # (redis-py types the timeout as int; Redis >= 6 takes fractional seconds.)
        pipe.blmove(self.input, self.processing, round(timeout_s, 3), "RIGHT", "LEFT")  # type: ignore[arg-type]
        pipe.hlen(self._attempts)
        raw, requeued_any = guard(pipe.execute)
        if raw is None:
            return []
        if not requeued_any:  # the common case: nothing was ever requeued, one round trip
            return [Claim(raw, 1)]
        count = guard(self.client.hget, self._attempts, hashlib.sha1(raw).hexdigest())
        return [Claim(raw, 1 + int(count or 0))]

    # -- commit ----------------------------------------------------------------------------
    def commit(self, commit: Commit) -> None:
        """Local pushes + dead letters + acknowledgements in one MULTI/EXEC round trip."""
        self._settle()
        self._recover()
        acks = commit.acks if isinstance(commit.acks, list) else list(commit.acks)
        side = self._claims.side_of(acks)
        if side == "tail" and self._may_claim_ahead():
            self._send_with_claim(commit, acks)
            return
        pipe = self.client.pipeline(transaction=True)
        order = self._queue_writes(pipe, commit)
        ack_at = len(order)
        if side is None and acks:
            self._ack(keys=self._ack_keys, args=acks, client=pipe)
            order.append(None)
        elif side is not None:
            pipe.evalsha(self._trim.sha, 1, *self._trim_args(side, acks))
        if commit.set_aside:
            pipe.lpush(self.parked, *commit.set_aside)
        if not order and side is None and not commit.set_aside:
            commit.settled({})
            return
        replies = guard(pipe.execute, raise_on_error=False)
        self._acknowledged(acks, side, commit.set_aside)
        rejected = rejections(order, replies[: len(order)], transaction=True)
        if side is not None and not self._check_trim(replies[ack_at], acks):
            self._ack_due.extend(acks)
        commit.settled(rejected)

    @property
    def _ack_keys(self) -> list[str]:
        return [self.processing, self._attempts, self.parked]

    def _acknowledged(self, acks: list[bytes], side: str | None, aside: Sequence[bytes]) -> None:
        """Keep the books: ``acks`` left the claims (by position when ``side``), ``aside``
        were set aside; packets set aside before and acknowledged now were no claim's."""
        if self._aside and side is None:
            named = [raw for raw in acks if raw not in self._aside]
            self._aside.difference_update(acks)
            self._claims.acknowledged(named, side)
        else:
            self._claims.acknowledged(acks, side)
        self._aside.update(aside)

    def _queue_writes(self, pipe: Any, commit: Commit) -> list[Destination | None]:
        """LPUSH the pushes and the dead-letter records; what each reply is about."""
        order: list[Destination | None] = []
        for dest, payloads in commit.pushes.items():
            if payloads:
                pipe.lpush(dest.queue_name, *payloads)
                order.append(dest)
        if commit.records:
            pipe.lpush(self._dead, *commit.records)
            order.append(None)
        return order

    def _may_claim_ahead(self) -> bool:
        """Whether the next claim can be sent ahead: the caller keeps up, nothing is in
        flight or due, and it has not said that no claim will follow."""
        return (
            self._claiming
            and self._in_flight is None
            and not self._ack_due
            and self._claims.caller_keeps_up()
        )

    # -- the commit sent with the next claim -----------------------------------------------
    def _send_with_claim(self, commit: Commit, acks: list[bytes]) -> None:
        conn = self._conn
        if conn is None:
            conn = self._conn = guard(self.client.connection_pool.get_connection)
        order: list[Destination | None] = []
        commands: list[tuple[Any, ...]] = [("MULTI",)]
        for dest, payloads in commit.pushes.items():
            if payloads:
                commands.append(("LPUSH", dest.queue_name, *payloads))
                order.append(dest)
        if commit.records:
            commands.append(("LPUSH", self._dead, *commit.records))
            order.append(None)
        if acks:
            commands.append(("EVALSHA", self._trim.sha, 1, *self._trim_args("tail", acks)))
        if commit.set_aside:
            commands.append(("LPUSH", self.parked, *commit.set_aside))
        claim_keys = (self.input, self.processing, self._attempts)
        commands.append(("EVALSHA", self._claim.sha, 3, *claim_keys, self._want, 1))
        commands.append(("EXEC",))
        try:
            conn.send_packed_command(conn.pack_commands(commands))
        except ERRORS as exc:
            self._lost(exc)
        if acks:
            self._acknowledged(acks, "tail", commit.set_aside)
        queued = len(commands) - 2
        self._in_flight = _InFlight(queued, tuple(order), acks, self._want, commit.settled)

    def _settle(self) -> None:
        """Read the reply of the commit in flight: keep its claim, report its outcome."""
        sent, self._in_flight = self._in_flight, None
        if sent is None:
            return
        conn = self._conn
        try:
            for _ in range(sent.queued + 1):  # +OK for MULTI, +QUEUED for each command
                conn.read_response()
            replies = conn.read_response()
        except (*ERRORS, redis.ResponseError) as exc:
            self._lost(exc)
        pushed = len(sent.order)
        rejected = rejections(sent.order, replies[:pushed], transaction=True)
        if isinstance(replies[-1], Exception):
            # NOSCRIPT (the server restarted): the commit took effect; the next claim loads it.
            log.info("claim script not cached on the server: %s", replies[-1])
        else:
            self._claims.add(_claims_of(replies[-1]), sent.want, ahead=True)
        if sent.acked and not self._check_trim(replies[pushed], sent.acked):
            self._ack_due.extend(sent.acked)
        sent.settled(rejected)

    def _lost(self, exc: BaseException) -> NoReturn:
        """A commit sent with a claim got no reply: both may or may not have happened.
        Nothing held can be trusted; everything claimed goes back to the input."""
        self._drop_conn()
        self._requeue_due = True
        self._claims.clear()
        self._aside.clear()
        raise TransportError(f"commit outcome unknown: {exc}") from exc

    def _recover(self) -> None:
        """Before a new claim or commit: finish what a failure left due. Acknowledgements
        first: those packets were committed and must not be handed back."""
        self._flush_acks()
        if self._requeue_due:
            count = self.lease.requeue_own(count_attempt=False)  # TransportError: still away
            self._requeue_due = False
            self._claims.clear()
            self._aside.clear()
            if count:
                log.warning("handed %d claimed packets back after a reply was lost", count)
        if not self._claiming:
            self._release_ahead()

    def _flush_acks(self) -> None:
        if self._ack_due:
            guard(self._ack, keys=self._ack_keys, args=self._ack_due)
            self._ack_due = []

    def _release_ahead(self) -> None:
        """Hand back the batches claimed ahead and not handed out (a drain)."""
        self.release(self._claims.drop_ahead())

    def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()
            self.client.connection_pool.release(conn)

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
                guard(self.client.script_load, lua("trim"))
            guard(self._ack, keys=self._ack_keys, args=list(claim))
        except TransportError as exc:
            log.warning("could not acknowledge %d packets by name: %s", len(claim), exc)
            return False
        return True

    # -- the rest of the contract ----------------------------------------------------------
    def is_local(self, destination: Destination) -> bool:
        """Outputs to this source's own Redis ride in the commit's transaction."""
        return destination.kind == "redis" and (
            (same_host(destination.host), destination.port, destination.db) == self._address
        )

    def release(self, raws: Sequence[bytes]) -> None:
        """Hand claimed packets back to the front of the input, in their original order."""
        if raws:
            self._settle()
            guard(self._release, keys=[self.processing, self.input], args=list(raws))
            self._claims.forget(raws)


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
    host = same_host(str(kw.get("host", "localhost")))
    return (host, int(kw.get("port", 6379)), int(kw.get("db", 0)))
