"""A two-block chain through gRPC: block A's output with ``port: 0`` goes by
``InferenceProxy/infer`` to block B's gRPC ingest, and B's output arrives where B routes it
(both real runtimes in this process, one real redis-server)."""

from __future__ import annotations

import json
from typing import Any

import redis

from aios_instance import Block, OnDataResult, PreProcessResult, keys
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.packet import decode_packet, make_packet
from aios_instance.settings import Settings
from tests.support import eventually


class AddOne:
    def __init__(self, context: Any) -> None:
        self.context = context

    def on_preprocess(self, packet: Any) -> Any:
        return True, [PreProcessResult(packet=packet, extra_data=json.loads(packet.data))]

    def on_data(self, entry: Any) -> Any:
        value = entry.extra_data["value"] + 1
        return True, OnDataResult(output={"value": value, "by": self.context.block_id})


def _settings(server: EmbeddedRedis, block_id: str, **extra: Any) -> Settings:
    return Settings(
        block_id=block_id,
        redis_url_override=server.url,
        mgmt_port=0,
        metrics_port=0,
        ws_port=0,
        control_bind="127.0.0.1",
        idle_wait_s=0.2,
        **extra,
    )


def test_a_port_0_output_reaches_the_next_block_by_grpc(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url, protocol=2)
    runtime_b = Block(AddOne, _settings(redis_server, "chain-b", grpc_port=free_port())).start()
    runtime_a = Block(AddOne, _settings(redis_server, "chain-a")).start()
    try:
        eventually(lambda: runtime_b.ingress.grpc_port, what="B's gRPC ingest")
        port = runtime_b.ingress.grpc_port
        # A graph pointer: A's outputs go to B by gRPC (port 0), B's to the list b_out.
        to_b = {"host": f"127.0.0.1:{port}", "port": 0, "queue_name": "", "block_id": "chain-b"}
        out = {"host": "127.0.0.1", "port": redis_server.port, "queue_name": "b_out"}
        graph = {"chain-a": {"outputs": [to_b]}, "final": {"outputs": [out]}}
        pointer = {"is_graph": True, "graph": graph}
        for i in range(5):
            packet = make_packet({"value": i}, session_id="s", seq_no=i, output_ptr=pointer)
            client.lpush(keys.inputs("chain-a"), packet.SerializeToString())
        eventually(lambda: client.llen("b_out") == 5, what="B's outputs")
        outputs = [decode_packet(raw) for raw in client.lrange("b_out", 0, -1)[::-1]]
        assert sorted(json.loads(p.data)["value"] for p in outputs) == [2, 3, 4, 5, 6]
        assert {json.loads(p.data)["by"] for p in outputs} == {"chain-b"}
        assert client.llen(keys.dead_letters("chain-a")) == 0
        assert client.llen(keys.dead_letters("chain-b")) == 0
    finally:
        runtime_a.stop()
        runtime_b.stop()
        assert runtime_a.wait(10) and runtime_b.wait(10)
        client.close()
