"""The gRPC InferenceProxy ingest against a real grpcio client and a real redis-server: a
packet lands in the input list before `true` is answered, malformed ones are refused and
dead-lettered, another block's name and callers without the token are refused, Redis away
is UNAVAILABLE, and concurrent calls land exactly once each."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
import redis

from aios_instance import keys
from aios_instance._proto import inference_proxy_pb2 as pb
from aios_instance.control.access import AccessPolicy
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.errors import ConfigError
from aios_instance.ingest.grpc_server import Enqueuer, GrpcIngest, peer_host
from aios_instance.ingest.metrics import IngestMetrics
from aios_instance.metrics import AIOSMetrics
from aios_instance.packet import decode_packet, make_packet

BLOCK = "grpc-b"


class Served:
    def __init__(self, server: GrpcIngest, client: redis.Redis, metrics: AIOSMetrics) -> None:
        self.server, self.client, self.metrics = server, client, metrics
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        self.infer = self.channel.unary_unary(
            "/InferenceProxy/infer",
            request_serializer=pb.InferenceMessage.SerializeToString,
            response_deserializer=pb.InferenceRespose.FromString,
        )

    def call(self, raw: bytes, metadata: Any = (("x-service-name", BLOCK),)) -> Any:
        return self.infer(pb.InferenceMessage(rpc_data=raw), metadata=metadata, timeout=10)

    def sample(self, code: str) -> float:
        labels = {"ingress": "grpc", "code": code}
        return self.metrics.registry.get_sample_value("aios_ingest_requests_total", labels) or 0


def _serve(server_url: str, policy: AccessPolicy) -> Served:
    metrics = AIOSMetrics(block_id=BLOCK)
    client = redis.Redis.from_url(server_url, protocol=2, socket_timeout=2)
    ingest = GrpcIngest(
        redis=client,
        block_id=BLOCK,
        instance_id="i1",
        metrics=IngestMetrics(metrics),
        policy=policy,
        host="127.0.0.1",
        port=0,
    ).start()
    return Served(ingest, client, metrics)


@pytest.fixture
def served(redis_server: EmbeddedRedis) -> Iterator[Served]:
    s = _serve(redis_server.url, AccessPolicy("loopback"))
    s.client.delete(keys.inputs(BLOCK), keys.dead_letters(BLOCK))
    yield s
    s.channel.close()
    s.server.close()
    s.client.close()


def test_a_packet_is_in_the_input_list_when_true_is_answered(served: Served) -> None:
    raw = make_packet({"v": 1}, session_id="g", seq_no=3).SerializeToString()
    reply = served.call(raw)
    assert reply.message is True
    assert served.client.lrange(keys.inputs(BLOCK), 0, -1) == [raw]
    assert served.sample("OK") == 1


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b""])
def test_a_malformed_packet_is_refused_and_dead_lettered(served: Served, raw: bytes) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        served.call(raw)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "AIOSPacket" in refused.value.details()
    (record,) = [json.loads(r) for r in served.client.lrange(keys.dead_letters(BLOCK), 0, -1)]
    assert (record["outcome"], record["stage"]) == ("bad_input", "ingest")
    assert base64.b64decode(record["packet"]) == raw
    assert served.client.llen(keys.inputs(BLOCK)) == 0
    assert served.sample("INVALID_ARGUMENT") == 1


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((("x-service-name", "other"),), grpc.StatusCode.NOT_FOUND),
        ((), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_a_call_for_another_block_is_refused(
    served: Served, metadata: Any, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        served.call(make_packet({}).SerializeToString(), metadata)
    assert refused.value.code() is code and BLOCK in refused.value.details()
    assert served.client.llen(keys.inputs(BLOCK)) == 0


def test_with_a_token_a_call_needs_it(redis_server: EmbeddedRedis) -> None:
    s = _serve(redis_server.url, AccessPolicy("token", "t0k"))
    try:
        raw = make_packet({}).SerializeToString()
        with pytest.raises(grpc.RpcError) as refused:
            s.call(raw)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        ok = s.call(raw, (("x-service-name", BLOCK), ("authorization", "Bearer t0k")))
        assert ok.message is True
    finally:
        s.channel.close()
        s.server.close()


def test_redis_away_is_unavailable(redis_server: EmbeddedRedis) -> None:
    s = _serve(f"redis://127.0.0.1:{free_port()}/0", AccessPolicy("loopback"))  # nobody there
    try:
        with pytest.raises(grpc.RpcError) as refused:
            s.call(make_packet({}).SerializeToString())
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        s.channel.close()
        s.server.close()


def test_concurrent_calls_land_exactly_once_each(served: Served) -> None:
    raws = [make_packet({"i": i}, seq_no=i).SerializeToString() for i in range(400)]
    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(served.call, raws))
    assert all(r.message for r in replies)
    landed = served.client.lrange(keys.inputs(BLOCK), 0, -1)
    assert sorted(landed) == sorted(raws)
    assert sorted(decode_packet(r).seq_no for r in landed) == list(range(400))


def test_concurrent_pushes_share_round_trips(served: Served) -> None:
    """Real Redis counts the LPUSHes: 32 threads pushing 20 packets each need fewer."""
    enqueuer = Enqueuer(served.client, "shared-rounds")
    before = served.client.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: enqueuer.push(b"%d" % i), range(640)))
    calls = served.client.info("commandstats")["cmdstat_lpush"]["calls"] - before
    assert served.client.llen("shared-rounds") == 640
    assert calls < 640


def test_peer_hosts() -> None:
    assert peer_host("ipv4:127.0.0.1:5555") == "127.0.0.1"
    assert peer_host("ipv6:[::1]:5555") == "::1"
    assert peer_host("unix:/tmp/s") is None


def test_a_port_in_use_is_a_config_error(served: Served) -> None:
    metrics = IngestMetrics(AIOSMetrics(block_id="x"))
    taken = GrpcIngest(
        redis=served.client,
        block_id=BLOCK,
        instance_id="i2",
        metrics=metrics,
        policy=AccessPolicy("loopback"),
        host="127.0.0.1",
        port=served.server.port,
    )
    with pytest.raises(ConfigError, match="AIOS_GRPC_PORT"):
        taken.start()
