"""The reliable Redis source and the Redis sink against a real redis-server.

Claim order, acknowledgement, leases and requeue of lapsed instances, release at shutdown,
rejected pushes and an unreachable server.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import pytest
import redis

from aios_instance import keys
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.errors import TransportError
from aios_instance.routing import Destination
from aios_instance.transport.base import Claim
from aios_instance.transport.redis import RedisSink, RedisSource, connect
from tests.support import eventually

BLOCK = "tb"


def _source(server: EmbeddedRedis, instance: str, ttl_s: float = 10.0) -> RedisSource:
    return RedisSource(connect(server.url), BLOCK, instance, lease_ttl_s=ttl_s)


def _fill(client: redis.Redis, n: int) -> list[bytes]:
    """LPUSH p0..p{n-1} one by one, as producers do (p0 is the oldest)."""
    items = [f"p{i}".encode() for i in range(n)]
    for item in items:
        client.lpush(keys.inputs(BLOCK), item)
    return items


def _dest(server: EmbeddedRedis, queue: str) -> Destination:
    return Destination("redis", "127.0.0.1", server.port, queue, "")


def test_claim_is_fifo_and_moves_to_processing(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = _fill(redis_client, 10)
    source = _source(redis_server, "i1")
    claims = source.claim(4, 0)
    assert [c.raw for c in claims] == items[:4]
    assert [c.attempt for c in claims] == [1, 1, 1, 1]
    assert redis_client.llen(source.processing) == 4
    assert redis_client.llen(source.input) == 6
    assert [c.raw for c in source.claim(100, 0)] == items[4:]
    assert source.claim(5, 0) == []


def test_commit_pushes_dead_letters_and_acks_in_one_transaction(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    _fill(redis_client, 3)
    source = _source(redis_server, "i1")
    claims = source.claim(3, 0)
    out = _dest(redis_server, "OUT")
    rejected = source.commit({out: [b"o1", b"o2"]}, [c.raw for c in claims], [b'{"r":1}'])
    assert rejected == {}
    assert redis_client.lrange("OUT", 0, -1) == [b"o2", b"o1"]
    assert redis_client.lrange(keys.dead_letters(BLOCK), 0, -1) == [b'{"r":1}']
    assert redis_client.llen(source.processing) == 0
    assert redis_client.exists(source.processing) == 0


def test_latest_ack_trims_only_the_latest_claim(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = _fill(redis_client, 6)
    source = _source(redis_server, "i1")
    older = source.claim(2, 0)  # still held (e.g. parked): must survive the trim
    latest = source.claim(3, 0)
    out = _dest(redis_server, "OUT")
    assert source.commit({out: [b"o"]}, (), (), latest=[c.raw for c in latest]) == {}
    assert sorted(redis_client.lrange(source.processing, 0, -1)) == sorted(c.raw for c in older)
    assert redis_client.lrange("OUT", 0, -1) == [b"o"]
    assert [c.raw for c in source.claim(5, 0)] == items[5:]


def test_a_sent_commit_acks_the_oldest_claim_and_claims_the_next_while_one_runs(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = _fill(redis_client, 10)
    source = _source(redis_server, "i1")
    first = source.claim(3, 0)
    ahead = source.finish(source.send_commit_and_claim({}, (), 3))[1]  # claimed while 1st runs
    assert [c.raw for c in ahead] == items[3:6]
    out = _dest(redis_server, "OUT")
    sent = source.send_commit_and_claim({out: [b"o1", b"o2"]}, [c.raw for c in first], 4)
    rejected, following = source.finish(sent)
    assert rejected == {}
    assert [c.raw for c in following] == items[6:10]
    held = redis_client.lrange(source.processing, 0, -1)
    assert sorted(held) == sorted(items[3:10])  # the first claim is gone, the others held
    assert redis_client.lrange("OUT", 0, -1) == [b"o2", b"o1"]
    assert source.commit({}, (), (), oldest=[c.raw for c in ahead]) == {}
    assert sorted(redis_client.lrange(source.processing, 0, -1)) == sorted(items[6:10])
    assert source.requeue_own() == 4
    assert redis_client.llen(source.processing) == 0
    assert [c.raw for c in source.claim(10, 0)] == items[6:10]  # back at the front, in order


def test_a_trim_checks_the_claim_is_where_it_should_be(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    """Our list was requeued by another instance (our lease lapsed) and we claimed again:
    acknowledging the old claim by position would remove the new one. It is acknowledged by
    name instead, and the new claim stays held."""
    items = _fill(redis_client, 6)
    source = _source(redis_server, "i1")
    old = source.claim(2, 0)
    assert source.requeue_own() == 2  # what a lapsed-lease requeue does to the list
    new = source.claim(2, 0)  # the same two packets again
    redis_client.lpush(source.processing, b"newer")  # ...and one claimed after them
    assert source.commit({}, (), (), oldest=[b"p4", b"p5"]) == {}  # not where it says
    held = redis_client.lrange(source.processing, 0, -1)
    assert sorted(held) == sorted([b"newer", *items[:2]])
    assert [c.raw for c in new] == [c.raw for c in old] == items[:2]
    sent = source.send_commit_and_claim({}, [b"x", b"y"], 1)  # neither end matches
    assert source.finish(sent)[1] == [Claim(items[2], 1)]
    assert sorted(redis_client.lrange(source.processing, 0, -1)) == sorted([b"newer", *items[:3]])


def test_a_sent_commit_survives_a_flushed_script_cache(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = _fill(redis_client, 4)
    source = _source(redis_server, "i1")
    first = source.claim(2, 0)
    redis_client.script_flush()  # as after a server restart
    out = _dest(redis_server, "OUT")
    sent = source.send_commit_and_claim({out: [b"o"]}, [c.raw for c in first], 2)
    rejected, following = source.finish(sent)
    assert (rejected, following) == ({}, [])  # the commit took effect; the claim did not
    assert redis_client.llen(source.processing) == 0
    assert redis_client.lrange("OUT", 0, -1) == [b"o"]
    assert [c.raw for c in source.claim(5, 0)] == items[2:]  # the next claim reloads it


def test_a_sent_commit_whose_connection_dies_has_an_unknown_outcome(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    _fill(redis_client, 4)
    source = _source(redis_server, "victim")
    first = source.claim(2, 0)
    redis_client.client_pause(5000, all=False)  # writes wait: the commit cannot run yet
    try:
        sent = source.send_commit_and_claim({}, [c.raw for c in first], 2)
        redis_client.client_kill_filter(_type="normal", skipme=True)  # all but this client
    finally:
        redis_client.client_unpause()
    with pytest.raises(TransportError, match="outcome unknown"):
        source.finish(sent)
    assert redis_client.llen(source.processing) == 2  # it never ran
    # The next send reconnects.
    redis_client.delete(source.processing)
    assert source.finish(source.send_commit_and_claim({}, (), 1))[1] != []


def test_commit_reports_a_wrongtype_list_and_still_acks(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    _fill(redis_client, 1)
    redis_client.set("NOT_A_LIST", "x")
    source = _source(redis_server, "i1")
    [claim] = source.claim(1, 0)
    bad, good = _dest(redis_server, "NOT_A_LIST"), _dest(redis_server, "OUT")
    rejected = source.commit({bad: [b"o"], good: [b"o"]}, [claim.raw], [])
    assert list(rejected) == [bad]
    assert rejected[bad].startswith("WRONGTYPE")
    assert redis_client.llen("OUT") == 1
    assert redis_client.llen(source.processing) == 0


def test_blocking_claim_wakes_up_when_a_packet_arrives(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    source = _source(redis_server, "i1")
    t0 = time.monotonic()
    assert source.claim(8, 0.2) == []
    assert time.monotonic() - t0 >= 0.15
    timer = threading.Timer(0.1, redis_client.lpush, (keys.inputs(BLOCK), b"late"))
    timer.start()
    try:
        claims = source.claim(8, 5.0)
    finally:
        timer.join()
    assert [c.raw for c in claims] == [b"late"]
    assert redis_client.lrange(source.processing, 0, -1) == [b"late"]  # claimed on wake-up


@pytest.mark.parametrize("timeout_s", [0.0009, 0.001, 0.0012, 0.0049])
def test_a_claim_never_sends_redis_a_timeout_it_reads_as_forever(
    redis_server: EmbeddedRedis, timeout_s: float
) -> None:
    source = RedisSource(connect(redis_server.url, socket_timeout_s=1.0), BLOCK, "i1")
    t0 = time.monotonic()
    assert source.claim(8, timeout_s) == []  # returns at once: no TransportError after 1 s
    assert time.monotonic() - t0 < 0.5


def test_a_blocking_claim_counts_the_deliveries_of_a_requeued_packet(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    source = _source(redis_server, "i1")
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


def test_requeue_of_a_lapsed_instance_goes_to_the_front_with_attempts(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = _fill(redis_client, 5)
    dead = _source(redis_server, "dead", ttl_s=0.2)
    dead.renew_lease()
    assert [c.raw for c in dead.claim(3, 0)] == items[:3]
    alive = _source(redis_server, "alive")
    alive.renew_lease()
    assert alive.requeue_orphans() == 0  # the lease still holds
    eventually(lambda: not redis_client.exists(keys.lease(BLOCK, "dead")))
    assert alive.requeue_orphans() == 3
    assert redis_client.llen(dead.processing) == 0
    assert redis_client.smembers(keys.instances(BLOCK)) == {b"alive"}
    # Requeued ones first, in their order, each claimed alone; then a normal batch.
    batches = [alive.claim(10, 0) for _ in range(4)]
    assert [[c.raw for c in b] for b in batches] == [items[:1], items[1:2], items[2:3], items[3:]]
    assert [[c.attempt for c in b] for b in batches] == [[2], [2], [2], [1, 1]]
    alive.commit({}, [c.raw for b in batches for c in b], [])
    assert redis_client.hlen(keys.attempts(BLOCK)) == 0  # acks forget the attempt counts


def test_restart_with_the_same_instance_id_requeues_and_counts(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = _fill(redis_client, 4)
    first = _source(redis_server, "same")
    first.start()
    assert len(first.claim(2, 0)) == 2
    again = _source(redis_server, "same")  # a restarted process, same INSTANCE_ID
    assert again.start() == 2
    [claim] = again.claim(4, 0)  # a redelivered packet comes alone
    assert claim == (items[0], 2)
    for expected_attempt in (3, 4):
        again = _source(redis_server, "same")  # it crashed again holding only that one
        assert again.start() == 1
        assert again.claim(4, 0) == [(items[0], expected_attempt)]
    assert again.claim(4, 0) == [(items[1], 2)]
    assert [c.raw for c in again.claim(4, 0)] == items[2:]
    assert redis_client.llen(keys.inputs(BLOCK)) == 0


def test_a_batch_stops_before_a_redelivered_packet(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = _fill(redis_client, 2)
    crashed = _source(redis_server, "crashed")
    crashed.start()
    crashed.claim(1, 0)
    crashed.start()  # p0 requeued (attempt 2) to the front
    more = [f"q{i}".encode() for i in range(3)]
    for item in more:
        redis_client.rpush(keys.inputs(BLOCK), item)  # ahead of p0 (a producer's RPUSH)
    source = _source(redis_server, "i1")
    assert source.claim(10, 0) == [(m, 1) for m in reversed(more)]
    assert source.claim(10, 0) == [(items[0], 2)]
    assert source.claim(10, 0) == [(items[1], 1)]


def test_release_hands_back_to_the_front_without_counting(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = _fill(redis_client, 5)
    source = _source(redis_server, "i1")
    claims = source.claim(3, 0)
    source.release([c.raw for c in claims[1:]])  # keep the first, hand back two
    assert redis_client.llen(source.processing) == 1
    assert [c.raw for c in source.claim(10, 0)] == items[1:]
    assert redis_client.hlen(keys.attempts(BLOCK)) == 0


def test_close_hands_back_claims_and_drops_the_lease(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = _fill(redis_client, 3)
    source = _source(redis_server, "i1")
    source.start()
    source.claim(2, 0)
    source.close()
    assert redis_client.exists(keys.lease(BLOCK, "i1")) == 0
    assert redis_client.smembers(keys.instances(BLOCK)) == set()
    assert redis_client.llen(source.processing) == 0
    other = _source(redis_server, "i2")
    claims = other.claim(10, 0)
    assert [c.raw for c in claims] == items
    assert [c.attempt for c in claims] == [1, 1, 1]  # a clean hand-back is no delivery


def test_sink_pushes_and_reports_rejections(
    redis_factory: Callable[[], EmbeddedRedis],
) -> None:
    downstream = redis_factory()
    client = connect(downstream.url)
    client.set("STRING", "x")
    sink = RedisSink(connect(downstream.url))
    good, bad = _dest(downstream, "LIST"), _dest(downstream, "STRING")
    rejected = sink.push({good: [b"a", b"b"], bad: [b"c"]})
    assert list(rejected) == [bad]
    assert client.lrange("LIST", 0, -1) == [b"b", b"a"]
    sink.close()
    client.close()


def test_unreachable_server_raises_transport_error() -> None:
    port = free_port()
    sink = RedisSink(connect(f"redis://127.0.0.1:{port}/0"))
    dest = Destination("redis", "127.0.0.1", port, "L", "")
    with pytest.raises(TransportError):
        sink.push({dest: [b"x"]})
    source = RedisSource(connect(f"redis://127.0.0.1:{port}/0"), BLOCK, "i1")
    with pytest.raises(TransportError):
        source.claim(1, 0)
    with pytest.raises(TransportError):
        source.commit({}, [b"x"], [])
