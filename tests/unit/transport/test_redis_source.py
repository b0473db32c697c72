"""The reliable Redis source against a real redis-server: claim order, commits, the
acknowledgement by position and its checks, the claim made ahead, failures whose outcome is
unknown, release and close.

Claims of fewer packets than asked for ("short") are never followed by a claim ahead, so
the tests that are not about it fill the input with fewer packets than they claim.
"""

from __future__ import annotations

import hashlib
import threading

import pytest
import redis

from aios_instance import keys
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.errors import TransportError
from aios_instance.routing import Destination
from aios_instance.transport.base import Claim, Commit, Rejected
from aios_instance.transport.redis import RedisSource, connect
from tests.support import eventually
from tests.unit.transport.redis_support import BLOCK, fill, make_source


def _dest(server: EmbeddedRedis, queue: str) -> Destination:
    return Destination("redis", "127.0.0.1", server.port, queue, "")


def _raws(claims: list[Claim]) -> list[bytes]:
    return [c.raw for c in claims]


class Settled(list[Rejected]):
    """Collects what each commit's ``settled`` callback was given."""

    def commit(self, **fields: object) -> Commit:
        return Commit(settled=self.append, **fields)  # type: ignore[arg-type]


def test_claim_is_fifo_and_moves_to_processing(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 10)
    source = make_source(redis_server)
    claims = source.claim(20, 0)
    assert _raws(claims) == items
    assert [c.attempt for c in claims] == [1] * 10
    assert redis_client.llen(source.processing) == 10
    assert redis_client.llen(source.input) == 0
    assert source.claim(5, 0) == []


def test_commit_pushes_dead_letters_and_acks_in_one_transaction(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    fill(redis_client, 3)
    source = make_source(redis_server)
    claims = source.claim(5, 0)
    out = _dest(redis_server, "OUT")
    settled = Settled()
    source.commit(
        settled.commit(pushes={out: [b"o1", b"o2"]}, acks=_raws(claims), records=[b'{"r":1}'])
    )
    assert settled == [{}]
    assert redis_client.lrange("OUT", 0, -1) == [b"o2", b"o1"]
    assert redis_client.lrange(keys.dead_letters(BLOCK), 0, -1) == [b'{"r":1}']
    assert redis_client.exists(source.processing) == 0


def test_acknowledging_the_latest_claim_leaves_an_older_one_held(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    source = make_source(redis_server)
    fill(redis_client, 2)
    older = source.claim(5, 0)  # still held (e.g. parked): must survive the trim
    latest_items = fill(redis_client, 3, "q")
    source_claims = source.claim(5, 0)
    assert _raws(source_claims) == latest_items
    settled = Settled()
    source.commit(settled.commit(pushes={_dest(redis_server, "OUT"): [b"o"]}, acks=latest_items))
    assert settled == [{}]
    assert sorted(redis_client.lrange(source.processing, 0, -1)) == sorted(_raws(older))
    assert redis_client.lrange("OUT", 0, -1) == [b"o"]


def test_a_full_claim_claims_the_next_batch_ahead_and_commits_ride_with_claims(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 10)
    source = make_source(redis_server)
    first = source.claim(3, 0)
    assert _raws(first) == items[:3]
    eventually(lambda: redis_client.llen(source.processing) == 6, 5.0, "the claim ahead")
    second = source.claim(3, 0)  # handed out without a round trip
    assert _raws(second) == items[3:6]
    settled = Settled()
    out = _dest(redis_server, "OUT")
    source.commit(settled.commit(pushes={out: [b"o1"]}, acks=_raws(first)))
    assert settled == [{}]  # the caller still held `second`: nothing was sent ahead
    assert sorted(redis_client.lrange(source.processing, 0, -1)) == sorted(items[3:6])
    source.commit(settled.commit(pushes={out: [b"o2"]}, acks=_raws(second)))
    assert source._in_flight is not None  # sent with the claim of the next batch
    third = source.claim(3, 0)  # reads the reply: the commit's outcome, then the claim
    assert settled == [{}, {}]
    assert _raws(third) == items[6:9]
    assert redis_client.lrange("OUT", 0, -1) == [b"o2", b"o1"]
    assert sorted(redis_client.lrange(source.processing, 0, -1)) == sorted(items[6:9])
    source.close()
    assert _raws(make_source(redis_server, "i2").claim(10, 0)) == items[6:10]  # back, in order


def test_an_acknowledgement_by_position_checks_the_claim_is_still_there(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    """Our list was requeued by another instance (our lease lapsed), someone served those
    packets, and we claimed again: acknowledging the old claim by position would remove the
    new one. It is acknowledged by name instead (a no-op), and the new claim stays held."""
    fill(redis_client, 2)
    source = make_source(redis_server)
    old = source.claim(5, 0)
    assert source.lease.requeue("i1", force=True, count_attempt=False) == 2
    assert redis_client.rpop(keys.inputs(BLOCK), 2) == _raws(old)  # another instance's
    new_items = fill(redis_client, 2, "q")
    new = source.claim(5, 0)
    assert _raws(new) == new_items
    settled = Settled()
    source.commit(settled.commit(acks=_raws(old)))
    assert settled == [{}]
    assert sorted(redis_client.lrange(source.processing, 0, -1)) == sorted(new_items)


def test_a_commit_sent_ahead_survives_a_flushed_script_cache(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 6)
    source = make_source(redis_server)
    first = source.claim(2, 0)
    assert _raws(source.claim(2, 0)) == items[2:4]  # claimed ahead
    settled = Settled()
    source.commit(settled.commit(acks=_raws(first)))
    redis_client.script_flush()  # as after a server restart
    source.commit(settled.commit(pushes={_dest(redis_server, "OUT"): [b"o"]}, acks=items[2:4]))
    assert _raws(source.claim(5, 0)) == items[4:]  # the claim sent ahead failed: claimed anew
    assert settled == [{}, {}]  # the commit took effect, acknowledged by name
    assert redis_client.lrange("OUT", 0, -1) == [b"o"]
    assert sorted(redis_client.lrange(source.processing, 0, -1)) == sorted(items[4:])


def test_a_commit_whose_reply_is_lost_hands_everything_back_before_the_next_claim(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 6)
    source = make_source(redis_server, "victim")
    first = source.claim(2, 0)
    second = source.claim(2, 0)
    settled = Settled()
    source.commit(settled.commit(acks=_raws(first)))
    redis_client.client_pause(5000, all=False)  # writes wait: the commit cannot run yet
    try:
        source.commit(settled.commit(acks=_raws(second)))  # sent with the next claim
        redis_client.client_kill_filter(_type="normal", skipme=True)  # all but this client
    finally:
        redis_client.client_unpause()
    with pytest.raises(TransportError, match="outcome unknown"):
        source.claim(2, 0)
    assert settled == [{}]  # the lost commit is never reported as done
    assert sorted(redis_client.lrange(source.processing, 0, -1)) == sorted(items[2:4])
    again = source.claim(10, 0)  # hands back what it held, then claims
    assert _raws(again) == items[2:]
    assert redis_client.hlen(keys.attempts(BLOCK)) == 0  # not counted as deliveries


def test_commit_reports_a_wrongtype_list_and_still_acks(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    fill(redis_client, 1)
    redis_client.set("NOT_A_LIST", "x")
    source = make_source(redis_server)
    [claim] = source.claim(5, 0)
    bad, good = _dest(redis_server, "NOT_A_LIST"), _dest(redis_server, "OUT")
    settled = Settled()
    source.commit(settled.commit(pushes={bad: [b"o"], good: [b"o"]}, acks=[claim.raw]))
    [rejected] = settled
    assert list(rejected) == [bad]
    assert rejected[bad].startswith("WRONGTYPE")
    assert redis_client.llen("OUT") == 1
    assert redis_client.llen(source.processing) == 0


def test_blocking_claim_wakes_up_when_a_packet_arrives(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    source = make_source(redis_server)
    assert source.claim(8, 0.05) == []
    timer = threading.Timer(0.1, redis_client.lpush, (keys.inputs(BLOCK), b"late"))
    timer.start()
    try:
        claims = source.claim(8, 5.0)
    finally:
        timer.join()
    assert _raws(claims) == [b"late"]
    assert redis_client.lrange(source.processing, 0, -1) == [b"late"]  # claimed on wake-up


@pytest.mark.parametrize("timeout_s", [0.0009, 0.001, 0.0012, 0.0049])
def test_a_claim_never_sends_redis_a_timeout_it_reads_as_forever(
    redis_server: EmbeddedRedis, timeout_s: float
) -> None:
    """Redis reads a blocking timeout under a millisecond as "forever": such a claim must
    return at once instead of failing when the socket times out (1 s here)."""
    source = RedisSource(connect(redis_server.url, socket_timeout_s=1.0), BLOCK, "i1")
    assert source.claim(8, timeout_s) == []


def test_a_blocking_claim_counts_the_deliveries_of_a_requeued_packet(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    source = make_source(redis_server)
    redis_client.lpush(source.processing, b"held")  # something else held: not the one asked
    redis_client.hset(keys.attempts(BLOCK), hashlib.sha1(b"again").hexdigest(), 2)
    redis_client.hset(keys.attempts(BLOCK), hashlib.sha1(b"held").hexdigest(), 7)
    timer = threading.Timer(0.1, redis_client.lpush, (keys.inputs(BLOCK), b"again"))
    timer.start()
    try:
        claims = source.claim(8, 5.0)
    finally:
        timer.join()
    assert claims == [Claim(b"again", 3)]  # requeued twice: this is its third delivery


def test_a_batch_stops_before_a_redelivered_packet(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 2)
    crashed = make_source(redis_server, "crashed")
    crashed.start()
    assert _raws(crashed.claim(5, 0)) == items
    crashed.start()  # p0, p1 requeued (attempt 2) to the front
    more = [f"q{i}".encode() for i in range(3)]
    for item in more:
        redis_client.rpush(keys.inputs(BLOCK), item)  # ahead of them (a producer's RPUSH)
    source = make_source(redis_server)
    assert source.claim(10, 0) == [(m, 1) for m in reversed(more)]
    assert source.claim(10, 0) == [(items[0], 2)]  # each redelivery alone
    assert source.claim(10, 0) == [(items[1], 2)]
    assert source.claim(10, 0) == []


def test_release_hands_back_to_the_front_without_counting(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 3)
    source = make_source(redis_server)
    claims = source.claim(5, 0)
    source.release(_raws(claims[1:]))  # keep the first, hand back two
    assert redis_client.llen(source.processing) == 1
    assert _raws(source.claim(10, 0)) == items[1:]
    assert redis_client.hlen(keys.attempts(BLOCK)) == 0


def test_close_hands_back_claims_and_the_batch_claimed_ahead_and_drops_the_lease(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 6)
    source = make_source(redis_server)
    source.start()
    source.claim(2, 0)  # and two more claimed ahead
    source.close()
    assert redis_client.exists(keys.lease(BLOCK, "i1")) == 0
    assert redis_client.smembers(keys.instances(BLOCK)) == set()
    assert redis_client.llen(source.processing) == 0
    claims = make_source(redis_server, "i2").claim(10, 0)
    assert _raws(claims) == items
    assert [c.attempt for c in claims] == [1] * 6  # a clean hand-back is no delivery


def test_an_unreachable_server_raises_transport_error() -> None:
    port = free_port()
    source = RedisSource(connect(f"redis://127.0.0.1:{port}/0"), BLOCK, "i1")
    with pytest.raises(TransportError):
        source.claim(1, 0)
    with pytest.raises(TransportError):
        source.commit(Commit(acks=[b"x"]))


def test_close_after_a_lost_reply_still_hands_everything_back_and_drops_the_lease(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 8)
    source = make_source(redis_server, "victim")
    source.start()
    first = source.claim(2, 0)
    second = source.claim(2, 0)
    source.commit(Commit(acks=_raws(first)))
    redis_client.client_pause(5000, all=False)
    try:
        source.commit(Commit(acks=_raws(second)))  # sent with the next claim
        redis_client.client_kill_filter(_type="normal", skipme=True)
    finally:
        redis_client.client_unpause()
    source.close()
    assert redis_client.llen(source.processing) == 0
    assert redis_client.exists(keys.lease(BLOCK, "victim")) == 0
    assert sorted(redis_client.lrange(keys.inputs(BLOCK), 0, -1)) == sorted(items[2:])


def test_set_aside_packets_leave_the_claim_whole_and_wait_in_the_parked_list(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 10)
    source = make_source(redis_server)
    first = source.claim(3, 0)
    eventually(lambda: redis_client.llen(source.processing) == 6, 5.0, "the claim ahead")
    second = source.claim(3, 0)
    source.commit(Commit(acks=_raws(first)))
    # items[4]'s outputs wait for an endpoint: the claim is still acknowledged whole, by
    # position, with the next claim riding along.
    source.commit(Commit(acks=_raws(second), set_aside=[items[4]]))
    assert source._in_flight is not None
    third = source.claim(3, 0)
    assert _raws(third) == items[6:9]
    assert redis_client.lrange(source.parked, 0, -1) == [items[4]]
    assert sorted(redis_client.lrange(source.processing, 0, -1)) == sorted(items[6:9])
    # Delivered later: acknowledged by name, from the parked list; the claim is unaffected.
    source.commit(Commit(acks=[items[4]]))
    assert redis_client.llen(source.parked) == 0
    source.commit(Commit(acks=_raws(third)))
    assert redis_client.lrange(source.processing, 0, -1) == [items[9]]  # claimed ahead
    source.close()


def test_set_aside_packets_go_back_with_a_close_and_with_a_lapsed_lease(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 4)
    source = make_source(redis_server)
    source.start()
    claims = source.claim(10, 0)
    source.commit(Commit(acks=_raws(claims), set_aside=items[1:3]))
    assert redis_client.llen(source.processing) == 0
    source.close()
    assert redis_client.llen(source.parked) == 0
    again = make_source(redis_server, "i2", ttl_s=0.2)
    again.start()
    claims = again.claim(10, 0)
    assert _raws(claims) == items[1:3]  # handed back to the front, in order
    again.commit(Commit(acks=_raws(claims), set_aside=_raws(claims)))
    # i2 dies (no close): its lease lapses and another instance hands its parked list back.
    eventually(lambda: not redis_client.exists(keys.lease(BLOCK, "i2")), 5.0, "the lapse")
    third = make_source(redis_server, "i3")
    third.start()
    assert third.lease.requeue_lapsed() == 2
    assert redis_client.llen(keys.parked(BLOCK, "i2")) == 0
    # Counted as a delivery each (a requeued packet is then claimed on its own).
    assert [(c.raw, c.attempt) for c in third.claim(10, 0)] == [(items[1], 2)]
    assert [(c.raw, c.attempt) for c in third.claim(10, 0)] == [(items[2], 2)]
    third.close()
    again.client.close()


def test_its_own_server_is_local_however_it_is_spelt(redis_server: EmbeddedRedis) -> None:
    source = make_source(redis_server)  # connected to 127.0.0.1
    for host in ("127.0.0.1", "localhost", "LOCALHOST.", "[::1]"):
        assert source.is_local(Destination("redis", host, redis_server.port, "q", ""))
    assert not source.is_local(Destination("redis", "127.0.0.1", redis_server.port, "q", "", 1))
    assert not source.is_local(Destination("redis", "127.0.0.2", redis_server.port, "q", ""))
    source.client.close()
