"""The Redis lease: renewal, takeover of lapsed instances (to the front, counting the
delivery), and a restart under the same instance id."""

from __future__ import annotations

import redis

from aios_instance import keys
from aios_instance.embedded import EmbeddedRedis
from aios_instance.transport.base import Commit
from aios_instance.transport.redis import RedisBacklog
from tests.support import eventually
from tests.unit.transport.redis_support import BLOCK, fill, make_source


def test_renew_sets_the_heartbeat_with_its_ttl_and_lists_the_instance(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    source = make_source(redis_server, "i1", ttl_s=3.0)
    source.lease.renew()
    assert 0 < redis_client.pttl(keys.lease(BLOCK, "i1")) <= 3000
    assert redis_client.smembers(keys.instances(BLOCK)) == {b"i1"}


def test_requeue_of_a_lapsed_instance_goes_to_the_front_with_attempts(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 3)
    dead = make_source(redis_server, "dead", ttl_s=0.2)
    dead.lease.renew()
    assert [c.raw for c in dead.claim(10, 0)] == items
    items += fill(redis_client, 2, "q")
    alive = make_source(redis_server, "alive")
    alive.lease.renew()
    assert alive.lease.requeue_lapsed() == 0  # the lease still holds
    eventually(lambda: not redis_client.exists(keys.lease(BLOCK, "dead")))
    assert alive.lease.requeue_lapsed() == 3
    assert redis_client.llen(dead.processing) == 0
    assert redis_client.smembers(keys.instances(BLOCK)) == {b"alive"}
    # Requeued ones first, in their order, each claimed alone; then a normal batch.
    batches = [alive.claim(10, 0) for _ in range(4)]
    assert [[c.raw for c in b] for b in batches] == [items[:1], items[1:2], items[2:3], items[3:]]
    assert [[c.attempt for c in b] for b in batches] == [[2], [2], [2], [1, 1]]
    alive.commit(Commit(acks=[c.raw for b in batches for c in b]))
    assert redis_client.hlen(keys.attempts(BLOCK)) == 0  # acks forget the attempt counts


def test_restart_with_the_same_instance_id_requeues_and_counts(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    items = fill(redis_client, 2)
    first = make_source(redis_server, "same")
    first.start()
    assert len(first.claim(5, 0)) == 2
    items += fill(redis_client, 2, "q")
    again = make_source(redis_server, "same")  # a restarted process, same INSTANCE_ID
    assert again.start() == 2
    [claim] = again.claim(4, 0)  # a redelivered packet comes alone
    assert claim == (items[0], 2)
    for expected_attempt in (3, 4):
        again = make_source(redis_server, "same")  # it crashed again holding only that one
        assert again.start() == 1
        assert again.claim(4, 0) == [(items[0], expected_attempt)]
    assert again.claim(4, 0) == [(items[1], 2)]
    assert [c.raw for c in again.claim(4, 0)] == items[2:]
    assert redis_client.llen(keys.inputs(BLOCK)) == 0


def test_backlog_reports_depth_and_the_packet_claimed_next(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    backlog = RedisBacklog(redis_client, BLOCK)
    assert (backlog.depth(), backlog.oldest()) == (0, None)
    items = fill(redis_client, 3)
    assert (backlog.depth(), backlog.oldest()) == (3, items[0])
