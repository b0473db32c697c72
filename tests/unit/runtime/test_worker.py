"""The worker loop: claim → pipeline → push → ack, parked deliveries, dead letters, shutdown.

Driven step by step with a small block: ``RedisSource`` + ``SinkPool`` against real
redis-servers where Redis is the point, ``MemorySource`` where it is not.
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from aios_instance import OnDataResult, PreProcessResult, keys
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.errors import TransportError
from aios_instance.packet import decode_packet, make_packet
from aios_instance.routing import Destination, Router, destination_from_url
from aios_instance.runtime import outbox as outbox_module
from aios_instance.runtime.hooks import Batch, Hooks
from aios_instance.runtime.pipeline import Pipeline
from aios_instance.runtime.worker import Worker
from aios_instance.tools import Muxer
from aios_instance.transport.memory import MemorySink, MemorySource
from aios_instance.transport.pool import SinkPool
from aios_instance.transport.redis import RedisSource, connect
from tests.support import FakeClock, eventually, step_until

BLOCK = "wb"


class Echo:
    """Outputs ``{"v": data["v"]}``; ``{"fail": true}`` fails in on_data."""

    def on_preprocess(self, packet: Any) -> Any:
        return True, PreProcessResult(packet=packet, extra_data=json.loads(packet.data))

    def on_data(self, entry: Any) -> Any:
        data = entry.extra_data
        if data.get("fail"):
            return False, "asked to fail"
        return True, OnDataResult(output={"v": data["v"]})


class Pairs(Echo):
    """Joins the two packets of each (session_id, seq_no)."""

    def get_muxer(self) -> Muxer:
        return Muxer(2)

    def on_preprocess(self, packet: Any) -> Any:
        inputs = packet.data["inputs"]  # the Muxer merges into a dict
        return True, PreProcessResult(packet=packet, extra_data={"v": [d["v"] for d in inputs]})


class CountingHooks(Hooks):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failed_pushes: list[float] = []  # when (on the clock)
        self.unfinished_at_shutdown = 0
        self.dead: Counter[str] = Counter()
        self.acked = 0
        self.claims: list[tuple[bytes, int]] = []  # (packet, attempt) in claim order
        self.sizes: list[int] = []

    def claimed(self, batch: Batch) -> None:
        self.sizes.append(len(batch.claims))
        self.claims.extend(batch.claims)

    def committed(self, batch: Batch, pushed: int, acked: int, seconds: float) -> None:
        self.acked += acked

    def dead_lettered(self, batch: Batch, reason: str, count: int, detail: str) -> None:
        self.dead[reason] += count

    def delivery_failed(self, endpoint: str, error: Exception, parked: int) -> None:
        self.failed_pushes.append(self.clock())

    def unfinished(self, deliveries: int) -> None:
        self.unfinished_at_shutdown = deliveries


Make = Callable[..., Worker]


@pytest.fixture
def make_worker(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> Iterator[Make]:
    """Workers on the session server (flushed by redis_client); closed at teardown."""
    made: list[tuple[RedisSource, SinkPool]] = []

    def make(
        block: Any = None,
        instance: str = "w1",
        source_class: type[RedisSource] = RedisSource,
        sinks: Callable[[SinkPool], Any] = lambda pool: pool,
        **options: Any,
    ) -> Worker:
        default = destination_from_url(redis_server.url, "OUT")
        pipeline = Pipeline(block or Echo(), Router(BLOCK, (default,)))
        source = source_class(connect(redis_server.url), BLOCK, instance, lease_ttl_s=5.0)
        source.start()
        pool = SinkPool(socket_timeout_s=2.0)
        made.append((source, pool))
        options.setdefault("idle_wait_s", 0.05)
        sink_for = sinks(pool)
        return Worker(pipeline, source, sink_for, block_id=BLOCK, instance_id=instance, **options)

    yield make
    for source, pool in made:
        source.close()
        source.client.close()
        pool.close()


def _send(client: redis.Redis, values: list[Any], output_ptr: Any = "", seq0: int = 0) -> None:
    for i, value in enumerate(values):
        data = value if isinstance(value, dict) else {"v": value}
        packet = make_packet(data, session_id="s", seq_no=seq0 + i, output_ptr=output_ptr)
        client.lpush(keys.inputs(BLOCK), packet.SerializeToString())


def _outputs(client: redis.Redis, queue: str = "OUT") -> list[Any]:
    """Output values, oldest first (producers LPUSH, so the list reads newest first)."""
    return [json.loads(decode_packet(r).data)["v"] for r in client.lrange(queue, 0, -1)[::-1]]


def _dead(client: redis.Redis) -> list[dict[str, Any]]:
    raw = client.lrange(keys.dead_letters(BLOCK), 0, -1)[::-1]
    return [json.loads(r) for r in raw]


def _held(client: redis.Redis, worker: Worker) -> int:
    """Packets the worker's Redis source holds: claimed, or set aside (outputs parked)."""
    source = worker.source
    assert isinstance(source, RedisSource)
    return int(client.llen(source.processing)) + int(client.llen(source.parked))


def _ptr(port: int, queue: str) -> str:
    return json.dumps({"outputs": [{"host": "127.0.0.1", "port": port, "queue_name": queue}]})


def test_outputs_keep_fifo_order_and_the_processing_list_empties(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    worker = make_worker(claim_batch=16)
    _send(redis_client, list(range(200)))
    step_until(worker, lambda: redis_client.llen("OUT") == 200)
    assert _outputs(redis_client) == list(range(200))
    assert redis_client.llen(keys.inputs(BLOCK)) == 0
    assert redis_client.llen(worker.source.processing) == 0  # type: ignore[attr-defined]
    assert _dead(redis_client) == []
    assert worker.step() == 0


def test_failures_are_dead_lettered_with_reason_and_the_packet(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    hooks = CountingHooks()
    worker = make_worker(hooks=hooks)
    bad_bytes = b"\xff\xff\xff"
    redis_client.lpush(keys.inputs(BLOCK), bad_bytes)
    _send(redis_client, [{"fail": True}], seq0=1)
    not_json = make_packet(None, session_id="s", seq_no=2)
    not_json.data = "not json"
    redis_client.lpush(keys.inputs(BLOCK), not_json.SerializeToString())
    _send(redis_client, [3], output_ptr="{bad", seq0=3)
    _send(redis_client, [4, 5], seq0=4)
    step_until(worker, lambda: redis_client.llen(keys.dead_letters(BLOCK)) == 4)
    by_packet = {base64.b64decode(r["packet"]): r for r in _dead(redis_client)}
    assert len(by_packet) == 4
    record = by_packet.pop(bad_bytes)
    assert (record["outcome"], record["stage"]) == ("bad_input", "decode")
    assert "not a valid AIOSPacket" in record["reason"]
    by_seq = {r["seq_no"]: r for r in by_packet.values()}
    assert sorted(by_seq) == [1, 2, 3]
    assert (by_seq[1]["outcome"], by_seq[1]["stage"]) == ("user_error", "on_data")
    assert "asked to fail" in by_seq[1]["reason"]
    assert (by_seq[2]["outcome"], by_seq[2]["stage"]) == ("bad_input", "decode")
    assert "not valid JSON" in by_seq[2]["reason"]
    assert (by_seq[3]["outcome"], by_seq[3]["stage"]) == ("routing_error", "route")
    assert "bad output_ptr" in by_seq[3]["reason"]
    assert all(r["block_id"] == BLOCK and r["instance_id"] == "w1" for r in by_seq.values())
    assert _outputs(redis_client) == [4, 5]
    assert redis_client.llen(worker.source.processing) == 0  # type: ignore[attr-defined]
    assert hooks.dead == Counter(bad_input=2, user_error=1, routing_error=1)
    assert hooks.acked == 6


class Settling:
    """Steps a worker, then waits for the pushes it started on the endpoints' senders, so
    that the next step sees how they ended (what a busier loop sees a little later)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def step(self) -> int:
        claimed = self.worker.step()
        assert self.worker.outbox.wait(10)
        return claimed


def test_unreachable_endpoint_keeps_inputs_claimed_backs_off_then_dead_letters(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    clock = FakeClock(100.0)
    hooks = CountingHooks(clock)
    worker = make_worker(delivery_timeout_s=1.0, hooks=hooks, clock=clock, idle_wait_s=0.0)
    port = free_port()  # nothing listens there
    _send(redis_client, [0, 1, 2], output_ptr=_ptr(port, "NOWHERE"))
    _send(redis_client, [3, 4], seq0=3)
    step_until(worker, lambda: redis_client.llen("OUT") == 2)
    processing = worker.source.processing  # type: ignore[attr-defined]
    assert _held(redis_client, worker) == 3  # not acknowledged: still this instance's
    assert redis_client.llen(processing) == 0  # set aside: the claims were acknowledged whole
    assert redis_client.llen(keys.inputs(BLOCK)) == 0
    assert worker.parked == 3
    while redis_client.llen(keys.dead_letters(BLOCK)) < 3:
        assert clock.now < 102.0, "never dead-lettered"
        clock.advance(0.01)
        Settling(worker).step()
    assert clock.now >= 101.0  # the delivery timeout
    # Exponential backoff from 50 ms: a handful of tries in 1 s, not one per step. (The
    # first failure is seen at once, the send waits for it; a retry's at the next step.)
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(hooks.failed_pushes)]
    assert gaps == [0.06, 0.1, 0.2, 0.4], gaps
    records = _dead(redis_client)
    assert sorted(r["seq_no"] for r in records) == [0, 1, 2]
    assert all(decode_packet(base64.b64decode(r["packet"])).seq_no == r["seq_no"] for r in records)
    for record in records:
        assert record["outcome"] == "delivery_error"
        assert record["stage"] == "push"
        assert f"127.0.0.1:{port}/0" in record["reason"]
        assert "for 1s" in record["reason"]
    assert _held(redis_client, worker) == 0
    assert worker.parked == 0
    assert hooks.dead == Counter(delivery_error=3)


def test_parked_outputs_are_delivered_when_the_endpoint_comes_back(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    worker = make_worker(delivery_timeout_s=30.0)
    port = free_port()
    _send(redis_client, list(range(10)), output_ptr=_ptr(port, "DOWN_OUT"))
    step_until(worker, lambda: worker.parked == 10)
    _send(redis_client, [10, 11], seq0=10)  # other packets keep flowing meanwhile
    step_until(worker, lambda: redis_client.llen("OUT") == 2)
    assert _held(redis_client, worker) == 10
    with EmbeddedRedis(port) as downstream:
        down = redis.Redis.from_url(downstream.url, protocol=2)
        step_until(worker, lambda: down.llen("DOWN_OUT") == 10)
        assert _outputs(down, "DOWN_OUT") == list(range(10))
        down.close()
    step_until(worker, lambda: _held(redis_client, worker) == 0)  # acknowledged
    assert worker.parked == 0
    assert _dead(redis_client) == []


def test_a_rejected_remote_push_is_dead_lettered_at_once(
    make_worker: Make, redis_client: redis.Redis, redis_factory: Callable[[], EmbeddedRedis]
) -> None:
    downstream = redis_factory()
    down = redis.Redis.from_url(downstream.url, protocol=2)
    down.set("A_STRING", "x")
    hooks = CountingHooks()
    worker = make_worker(hooks=hooks)
    _send(redis_client, [0], output_ptr=_ptr(downstream.port, "A_STRING"))
    _send(redis_client, [1], output_ptr=_ptr(downstream.port, "FINE"), seq0=1)
    _send(redis_client, [2], output_ptr=_ptr(redis_client_port(redis_client), "A_LOCAL"), seq0=2)
    redis_client.set("A_LOCAL", "x")
    step_until(worker, lambda: redis_client.llen(keys.dead_letters(BLOCK)) == 2)
    records = _dead(redis_client)
    assert [r["outcome"] for r in records] == ["delivery_error", "delivery_error"]
    assert all("WRONGTYPE" in r["reason"] for r in records)
    assert {decode_packet(base64.b64decode(r["packet"])).seq_no for r in records} == {0, 2}
    assert _outputs(down, "FINE") == [1]
    assert redis_client.llen(worker.source.processing) == 0  # type: ignore[attr-defined]
    assert hooks.dead == Counter(delivery_error=2)  # the local rejection is counted too
    down.close()


def redis_client_port(client: redis.Redis) -> int:
    return int(client.connection_pool.connection_kwargs["port"])


def test_poison_packets_go_to_the_dead_letter_list(
    make_worker: Make, redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    _send(redis_client, [0, 1])
    crashing = RedisSource(connect(redis_server.url), BLOCK, "crashy")
    for _ in range(3):  # three deliveries that never completed (a crash each time)
        crashing.start()
        assert len(crashing.claim(1, 0)) == 1
    crashing.start()  # requeued a third time: next delivery is the 4th
    crashing.client.close()
    worker = make_worker(max_deliveries=3)
    step_until(worker, lambda: redis_client.llen(keys.dead_letters(BLOCK)) == 1)
    [record] = _dead(redis_client)
    assert record["outcome"] == "max_deliveries"
    assert record["attempts"] == 4
    assert "max_deliveries=3" in record["reason"]
    assert decode_packet(base64.b64decode(record["packet"])).seq_no == record["seq_no"] == 0
    step_until(worker, lambda: redis_client.llen("OUT") == 1)
    assert _outputs(redis_client) == [1]
    assert redis_client.hlen(keys.attempts(BLOCK)) == 0


def test_a_lapsed_instance_is_requeued_to_the_front_with_attempts(
    make_worker: Make, redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    _send(redis_client, list(range(8)))
    lapsed = RedisSource(connect(redis_server.url), BLOCK, "lapsed", lease_ttl_s=0.2)
    lapsed.start()
    assert len(lapsed.claim(3, 0)) == 3  # and 3 more claimed ahead, their reply never read
    lapsed.client.close()
    hooks = CountingHooks()
    worker = make_worker(claim_batch=2, hooks=hooks)
    worker.step()  # takes 2 of the 5 left; claims 2 more while they run, the last with the commit
    source = worker.source
    assert isinstance(source, RedisSource)
    eventually(lambda: source.lease.requeue_lapsed() > 0, 5.0, "the lease to lapse")
    step_until(worker, lambda: redis_client.llen("OUT") == 8)
    # The fresh packets go first; then the requeued ones, in their order, each alone.
    claimed = [(decode_packet(raw).seq_no, attempt) for raw, attempt in hooks.claims]
    assert claimed == [(6, 1), (7, 1), (0, 2), (1, 2), (2, 2), (3, 2), (4, 2), (5, 2)]
    assert _outputs(redis_client) == [6, 7, 0, 1, 2, 3, 4, 5]
    assert redis_client.hlen(keys.attempts(BLOCK)) == 0


def test_shutdown_hands_back_muxer_held_and_undelivered_inputs(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    hooks = CountingHooks()
    worker = make_worker(block=Pairs(), delivery_timeout_s=30.0, hooks=hooks)
    for seq, v in ((1, "a"), (2, "b"), (1, "c")):
        _send(redis_client, [v], seq0=seq)
    nowhere = _ptr(free_port(), "NOWHERE")
    _send(redis_client, ["d"], output_ptr=nowhere, seq0=3)
    _send(redis_client, ["e"], output_ptr=nowhere, seq0=3)
    step_until(worker, lambda: redis_client.llen("OUT") == 1 and worker.parked == 1)
    assert _outputs(redis_client) == [["a", "c"]]
    source = worker.source
    assert isinstance(source, RedisSource)
    assert _held(redis_client, worker) == 3  # (2, b) waits; d+e parked (set aside)
    assert redis_client.llen(source.parked) == 2
    worker.stop()
    worker.shutdown(timeout_s=0.3)
    assert hooks.unfinished_at_shutdown == 1  # it gave up on the parked pair
    source.close()
    assert redis_client.llen(source.processing) == 0
    back = [decode_packet(r) for r in redis_client.lrange(keys.inputs(BLOCK), 0, -1)[::-1]]
    # Back at the front of the input: the undelivered pair (requeued by close), then the
    # muxer's half-group (handed back by shutdown).
    assert [(p.seq_no, json.loads(p.data)["v"]) for p in back] == [(3, "d"), (3, "e"), (2, "b")]
    assert redis_client.exists(keys.lease(BLOCK, "w1")) == 0


def test_a_down_endpoint_cannot_fill_memory_or_stop_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the bound, new outputs for an endpoint that failed are dead-lettered at once;
    the loop keeps claiming (a producer naming a dead endpoint must not stall the block)."""
    monkeypatch.setattr(outbox_module, "MAX_PARKED", 300)
    source = MemorySource(BLOCK)
    sink = MemorySink()
    sink.fail = True
    default = Destination("redis", "local", 6379, "OUT", "")
    pipeline = Pipeline(Echo(), Router(BLOCK, (default,)))
    options = {"block_id": BLOCK, "instance_id": "m1", "claim_batch": 100, "idle_wait_s": 0.01}
    worker = Worker(pipeline, source, lambda dest: sink, **options)  # type: ignore[arg-type]
    grpc_ptr = json.dumps({"outputs": [{"host": "proxy:1", "port": 0, "block_id": "next"}]})
    total = 1_000
    for i in range(total):
        source.put(make_packet({"v": i}, seq_no=i, output_ptr=grpc_ptr).SerializeToString())
    step_until(worker, lambda: not source.inputs)
    assert 300 <= worker.parked <= 300 + 100  # the bound, give or take the batch that crossed it
    assert len(source.processing) == worker.parked
    refused = [json.loads(r) for r in source.dead]
    assert len(refused) == total - worker.parked
    assert all("already wait for endpoints that failed" in r["reason"] for r in refused)
    sink.fail = False
    step_until(worker, lambda: not source.processing, timeout_s=20)
    assert len(sink.lists["next_inputs"]) == total - len(refused)


class Sluggish(MemorySink):
    """A working endpoint that takes its time: each push waits for the test to let it go."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def push(self, batches: Any) -> Any:
        assert self.go.wait(10)
        return super().push(batches)


def test_backpressure_stops_claiming_while_a_slow_endpoint_lags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox_module, "MAX_PARKED", 150)
    source, sink = MemorySource(BLOCK), Sluggish()
    default = Destination("redis", "local", 6379, "OUT", "")
    pipeline = Pipeline(Echo(), Router(BLOCK, (default,)))
    options = {"block_id": BLOCK, "instance_id": "m1", "claim_batch": 100, "idle_wait_s": 0.01}
    worker = Worker(pipeline, source, lambda dest: sink, **options)  # type: ignore[arg-type]
    worker.outbox.push_wait_s = 0.0  # the test lets the pushes go, not the clock
    grpc_ptr = json.dumps({"outputs": [{"host": "proxy:1", "port": 0, "block_id": "next"}]})
    total = 1_000
    for i in range(total):
        source.put(make_packet({"v": i}, seq_no=i, output_ptr=grpc_ptr).SerializeToString())
    step_until(worker, lambda: worker.parked > 150)
    for _ in range(3):
        assert worker.step() == 0  # claims nothing while over the limit
    assert len(source.inputs) == total - worker.parked
    sink.go.set()
    step_until(worker, lambda: len(sink.lists["next_inputs"]) == total, timeout_s=20)
    seqs = [decode_packet(r).seq_no for r in sink.lists["next_inputs"]]
    assert seqs == list(range(total))  # one push at a time per endpoint: in order
    step_until(worker, lambda: not source.processing)
    assert list(source.dead) == []


def test_backoff_is_per_endpoint_and_forgets_expired_ones() -> None:
    """An endpoint whose outputs expired must not make another down endpoint retry on every
    step (its stale retry time once did)."""
    source = MemorySource(BLOCK)
    sinks = {"x:1": MemorySink(), "y:1": MemorySink()}
    for sink in sinks.values():
        sink.fail = True
    default = Destination("redis", "local", 6379, "OUT", "")
    pipeline = Pipeline(Echo(), Router(BLOCK, (default,)))
    clock = FakeClock()
    worker = Worker(
        pipeline,
        source,
        lambda dest: sinks[dest.host],
        block_id=BLOCK,
        instance_id="m1",
        idle_wait_s=0.0,
        delivery_timeout_s=0.3,
        clock=clock,
    )

    def ptr(host: str) -> str:
        return json.dumps({"outputs": [{"host": host, "port": 0, "block_id": "next"}]})

    source.put(make_packet({"v": 0}, output_ptr=ptr("x:1")).SerializeToString())
    settling = Settling(worker)
    settling.step()
    while not source.dead:  # x's output expires
        assert clock.now < 1.0
        clock.advance(0.01)
        settling.step()
    worker.outbox.delivery_timeout_s = 30.0
    source.put(make_packet({"v": 1}, output_ptr=ptr("y:1")).SerializeToString())
    settling.step()
    assert worker.parked == 1
    for _ in range(20):
        clock.advance(0.01)
        settling.step()
    assert sinks["y:1"].attempts == 3  # at 0, 50 and 150 ms: not once per step
    sinks["y:1"].fail = False
    clock.advance(0.2)  # past the next retry
    settling.step()
    settling.step()  # the push that went through is seen
    assert worker.parked == 0
    assert len(sinks["y:1"].lists["next_inputs"]) == 1
    assert source.processing == []
    assert [json.loads(r)["outcome"] for r in source.dead] == ["delivery_error"]


class Slow(Echo):
    """Echo that spends ``delay_s`` per packet (a model's inference time)."""

    delay_s = 0.02

    def on_data(self, entry: Any) -> Any:
        time.sleep(self.delay_s)
        return super().on_data(entry)


def test_claims_shrink_to_the_target_for_a_slow_block_and_grow_for_a_fast_one(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    slow_hooks = CountingHooks()
    slow = make_worker(block=Slow(), claim_batch=64, claim_target_s=0.1, hooks=slow_hooks)
    _send(redis_client, list(range(30)))
    step_until(slow, lambda: redis_client.llen("OUT") == 30)
    # The first claim is small (speed unknown), and so are the two claimed ahead before its
    # time is known (a claim ahead is as large as the last one asked for); then ~0.1 s of
    # work: 0.1 / 0.02 = 5 or fewer.
    sizes = slow_hooks.sizes
    assert sizes[:3] == [8, 8, 8], sizes
    assert all(1 <= n <= 5 for n in sizes[3:]), sizes
    assert _outputs(redis_client) == list(range(30))
    redis_client.delete("OUT")
    fast_hooks = CountingHooks()
    fast = make_worker(instance="w2", claim_batch=64, hooks=fast_hooks)
    _send(redis_client, list(range(200)))
    step_until(fast, lambda: redis_client.llen("OUT") == 200)
    # 8 first, and 8 twice claimed ahead before its time was known; then full claims.
    assert fast_hooks.sizes[:4] == [8, 8, 8, 64], fast_hooks.sizes


def test_an_address_no_client_accepts_is_dead_lettered_and_the_loop_goes_on(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    def refusing(pool: SinkPool) -> Callable[[Destination], Any]:
        def sink_for(dest: Destination) -> Any:
            if dest.host == "unusable.invalid":  # what a client constructor refuses
                raise ValueError("Port could not be cast to integer value")
            return pool(dest)

        return sink_for

    hooks = CountingHooks()
    worker = make_worker(sinks=refusing, hooks=hooks)
    source = worker.source
    assert isinstance(source, RedisSource)
    bad = json.dumps({"outputs": [{"host": "unusable.invalid", "port": 1, "queue_name": "Q"}]})
    _send(redis_client, [0, 1], output_ptr=bad)
    _send(redis_client, [2, 3], seq0=2)
    step_until(worker, lambda: redis_client.llen("OUT") == 2)
    step_until(worker, lambda: len(_dead(redis_client)) == 2)
    records = _dead(redis_client)
    assert sorted(r["seq_no"] for r in records) == [0, 1]  # one record per input
    for record in records:
        assert record["outcome"] == "delivery_error"
        assert "no connection possible" in record["reason"]
        assert "Port could not be cast" in record["reason"]
    assert _outputs(redis_client) == [2, 3]
    assert redis_client.llen(source.processing) == 0
    assert hooks.dead == Counter(delivery_error=2)


def test_a_commit_with_no_reply_hands_everything_back_and_loses_nothing(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    worker = make_worker(claim_batch=16)
    _send(redis_client, list(range(300)))
    worker.step()
    worker.step()
    source = worker.source
    assert isinstance(source, RedisSource)
    assert source._in_flight is not None  # a commit (and the next claim) is on its way
    redis_client.client_pause(5000, all=False)  # it cannot run...
    try:
        redis_client.client_kill_filter(_type="normal", skipme=True)  # ...and never replies
    finally:
        redis_client.client_unpause()
    errors = 0
    deadline = time.monotonic() + 10
    while len(set(_outputs(redis_client))) < 300:
        assert time.monotonic() < deadline, "the worker did not recover"
        try:
            worker.step()
        except TransportError:
            errors += 1
    assert errors >= 1
    outputs = _outputs(redis_client)
    assert sorted(set(outputs)) == list(range(300))
    assert len(outputs) - 300 <= 3 * 16  # duplicates only from the batches held at the time
    assert redis_client.llen(worker.source.processing) == 0  # type: ignore[attr-defined]
    assert redis_client.llen(keys.inputs(BLOCK)) == 0


def test_a_zombie_whose_list_was_requeued_strands_and_loses_nothing(
    make_worker: Make, redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    """Our lease lapsed (a long pause) and another instance requeued our processing list
    while we held two batches and had a commit in flight; we go on as if nothing happened.
    No acknowledgement by position may then remove a packet we or anyone still hold."""
    zombie = make_worker(instance="zombie", claim_batch=8)
    rescuer = make_worker(instance="rescuer", claim_batch=8)
    _send(redis_client, list(range(400)))
    zombie.step()
    zombie.step()
    source = zombie.source
    assert isinstance(source, RedisSource)
    assert source._in_flight is not None and source._claims._ahead  # in flight; a batch ahead
    other = RedisSource(connect(redis_server.url), BLOCK, "rescuer")
    assert other.lease.requeue("zombie", force=True, count_attempt=True) > 0
    other.client.close()
    # The rescuer serves the requeued packets (each alone), so fresh ones are next in line.
    step_until(rescuer, lambda: redis_client.hlen(keys.attempts(BLOCK)) == 0)
    for _ in range(4):  # the zombie goes on a little, then is stopped (a graceful drain)
        zombie.step()
    zombie.stop()
    zombie.shutdown(5.0)
    source.close()  # hands back the batch it claimed ahead: it must still be there
    deadline = time.monotonic() + 20
    while len(set(_outputs(redis_client))) < 400:
        assert time.monotonic() < deadline, "not every packet came out"
        rescuer.step()
    rescuer.stop()
    rescuer.shutdown(5.0)
    assert sorted(set(_outputs(redis_client))) == list(range(400))
    for worker in (zombie, rescuer):
        assert redis_client.llen(worker.source.processing) == 0  # type: ignore[attr-defined]
    assert redis_client.llen(keys.inputs(BLOCK)) == 0
    assert _dead(redis_client) == []


class _FlakySource(RedisSource):
    """A real Redis source that can fail once: a send that never reaches the server (a
    refused reconnect), or a lost reply of a by-name acknowledgement after its commit took
    effect, or of a claim that did move packets."""

    lose_send = False
    lose_ack = False
    lose_claim = False

    def _send_with_claim(self, *args: Any, **kwargs: Any) -> Any:
        if self.lose_send:
            self.lose_send = False
            self._lost(ConnectionError("connection refused (injected)"))
        return super()._send_with_claim(*args, **kwargs)

    def _check_trim(self, reply: Any, claim: Any) -> bool:
        if self.lose_ack and reply == 1:
            self.lose_ack = False
            self.client.lpush(self.processing, *reversed(claim))  # as if never trimmed
            return False
        return super()._check_trim(reply, claim)

    def _claim_now(self, max_count: int, timeout_s: float) -> list[Any]:
        claims = super()._claim_now(max_count, timeout_s)
        if self.lose_claim and claims:
            self.lose_claim = False
            raise TransportError("reply lost (injected)")
        return claims


def _flaky(make_worker: Make) -> tuple[Worker, _FlakySource]:
    worker = make_worker(source_class=_FlakySource, claim_batch=16)
    assert isinstance(worker.source, _FlakySource)
    return worker, worker.source


def test_an_acknowledgement_lost_after_its_commit_is_retried_alone_without_duplicates(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    worker, source = _flaky(make_worker)
    _send(redis_client, list(range(300)))
    for _ in range(3):
        worker.step()
    source.lose_ack = True
    step_until(worker, lambda: redis_client.llen("OUT") == 300)
    step_until(worker, lambda: redis_client.llen(source.processing) == 0)
    assert source.lose_ack is False  # it happened
    worker.stop()
    worker.shutdown(5.0)
    assert _outputs(redis_client) == list(range(300))  # each once: only the ack was retried
    assert redis_client.llen(keys.inputs(BLOCK)) == 0


def test_a_claim_whose_reply_is_lost_hands_its_packets_back(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    worker, source = _flaky(make_worker)
    _send(redis_client, list(range(40)))
    source.lose_claim = True
    with pytest.raises(TransportError):
        worker.step()
    assert redis_client.llen(source.processing) > 0  # moved, and nobody knows
    step_until(worker, lambda: len(set(_outputs(redis_client))) == 40)
    worker.stop()
    worker.shutdown(5.0)
    assert sorted(_outputs(redis_client)) == list(range(40))
    assert redis_client.llen(source.processing) == 0


def test_a_failed_send_hands_everything_back_and_loses_nothing(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    worker, source = _flaky(make_worker)
    _send(redis_client, list(range(300)))
    for _ in range(3):
        worker.step()
    source.lose_send = True
    with pytest.raises(TransportError):
        worker.step()
    step_until(worker, lambda: len(set(_outputs(redis_client))) == 300)
    worker.stop()
    worker.shutdown(5.0)
    outputs = _outputs(redis_client)
    assert sorted(set(outputs)) == list(range(300))
    assert len(outputs) - 300 <= 2 * 16
    assert redis_client.llen(source.processing) == 0
    assert redis_client.llen(keys.inputs(BLOCK)) == 0


def test_a_rejected_local_push_is_recorded_even_by_a_shutdown_with_no_time(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    hooks = CountingHooks()
    worker = make_worker(hooks=hooks)
    redis_client.set("A_LOCAL", "x")
    _send(redis_client, [0], output_ptr=_ptr(redis_client_port(redis_client), "A_LOCAL"))
    assert worker.step() == 1  # acknowledged; the server refused the push
    worker.stop()
    worker.shutdown(0.0)
    [record] = _dead(redis_client)
    assert record["outcome"] == "delivery_error" and "WRONGTYPE" in record["reason"]
    assert hooks.dead == Counter(delivery_error=1)


def test_a_stopped_worker_claims_nothing_more_and_hands_back_what_was_claimed_ahead(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    worker = make_worker(claim_batch=4)
    _send(redis_client, list(range(40)))
    for _ in range(3):
        worker.step()
    worker.stop()
    worker.shutdown(5.0)
    processing = worker.source.processing  # type: ignore[attr-defined]
    assert redis_client.llen(processing) == 0
    out = _outputs(redis_client)
    back = [
        json.loads(decode_packet(r).data)["v"]
        for r in redis_client.lrange(keys.inputs(BLOCK), 0, -1)[::-1]
    ]
    assert out + back == list(range(40))  # each once, in order: output or back at the front


def test_delivery_records_carry_the_attempt_count() -> None:
    source, sink, clock = MemorySource(BLOCK), MemorySink(), FakeClock()
    sink.fail = True
    default = Destination("redis", "local", 6379, "OUT", "")
    worker = Worker(
        Pipeline(Echo(), Router(BLOCK, (default,))),
        source,
        lambda dest: sink,
        block_id=BLOCK,
        instance_id="m1",
        idle_wait_s=0.0,
        delivery_timeout_s=1.0,
        clock=clock,
    )
    ptr = json.dumps({"outputs": [{"host": "proxy:1", "port": 0, "block_id": "next"}]})
    source.put(make_packet({"v": 0}, output_ptr=ptr).SerializeToString())
    assert source.claim(1, 0) and source.crash() == 1  # a first delivery that never finished
    Settling(worker).step()
    clock.advance(2.0)
    Settling(worker).step()
    [record] = [json.loads(r) for r in source.dead]
    assert (record["outcome"], record["attempts"]) == ("delivery_error", 2)


class TcpTarpit:
    """A TCP endpoint on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_a_silent_endpoint_does_not_hold_up_other_packets(
    make_worker: Make, redis_client: redis.Redis
) -> None:
    """A push to an endpoint that accepts and never answers (a minute before its socket
    times out here) holds only the packets routed to it: every other packet is output and
    acknowledged meanwhile, and the claims stay acknowledged whole."""
    tarpit = TcpTarpit()
    slow_pool = SinkPool(socket_timeout_s=60.0)
    worker = make_worker(sinks=lambda pool: slow_pool, claim_batch=16)
    try:
        for i in range(300):
            ptr = _ptr(tarpit.port, "NEVER") if i % 50 == 0 else ""
            _send(redis_client, [i], output_ptr=ptr, seq0=i)
        step_until(worker, lambda: redis_client.llen("OUT") == 294, timeout_s=20)
        assert tarpit.accepted.is_set() and worker.parked == 6
        assert _held(redis_client, worker) == 6
        source = worker.source
        assert isinstance(source, RedisSource)
        assert redis_client.llen(source.processing) == 0  # the held ones are set aside
        assert sorted(_outputs(redis_client)) == [i for i in range(300) if i % 50]
    finally:
        tarpit.close()
        worker.outbox.close()
        slow_pool.close()
