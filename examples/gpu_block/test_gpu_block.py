"""GpuBlock on the CPU (no torch needed), and under a real runtime with an allocated GPU."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from aios_instance import Block, BlockTester, TestContext, keys, state
from aios_instance.blockdata import BlockData
from aios_instance.cli import load_block_class
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.packet import decode_packet, make_packet
from aios_instance.runtime.block import Runtime
from aios_instance.settings import Settings

GpuBlock = load_block_class(f"{Path(__file__).with_name('block.py')}:GpuBlock")
block_module = sys.modules[GpuBlock.__module__]
CUDA = block_module.torch is not None and block_module.torch.cuda.is_available()


def expected(vector: list[float]) -> tuple[list[float], float]:
    exps = [math.exp(v) for v in vector]
    return [e / sum(exps) for e in exps], math.sqrt(sum(v * v for v in vector))


def test_no_gpu_allocated_runs_on_the_cpu() -> None:
    tester = BlockTester(GpuBlock)  # TestContext: allocation_info == {"gpus": [], ...}
    assert tester.context.allocation_info["gpus"] == []
    [out] = tester.run({"vector": [1.0, 2.0, 3.0]}, raise_errors=True)
    softmax, norm = expected([1.0, 2.0, 3.0])
    assert out["softmax"] == pytest.approx(softmax)
    assert out["norm"] == pytest.approx(norm)
    assert out["device"] == "cpu"
    assert out["backend"] in ("torch", "numpy", "python")


def test_allocated_gpu_is_used_when_cuda_is_available() -> None:
    context = TestContext(
        allocation_info={"gpus": [{"index": 0}], "node_id": "n1", "cluster_id": ""}
    )
    tester = BlockTester(GpuBlock, context)
    [out] = tester.run({"vector": [0.5, -0.5]}, raise_errors=True)
    assert out["device"] == ("cuda:0" if CUDA else "cpu")
    assert out["softmax"] == pytest.approx(expected([0.5, -0.5])[0])
    assert tester.block.health()["allocated_gpus"] == [{"index": 0}]


def test_every_fallback_backend_agrees() -> None:
    vector = [3.0, -1.0, 0.25, 10.0]
    want_softmax, want_norm = expected(vector)
    backends = ["python"]
    backends += ["numpy"] if block_module.np is not None else []
    backends += ["torch"] if block_module.torch is not None else []
    for backend in backends:
        softmax, norm = block_module.compute(vector, backend, "cpu")
        assert softmax == pytest.approx(want_softmax) and norm == pytest.approx(want_norm), backend


def test_bad_input_is_refused() -> None:
    tester = BlockTester(GpuBlock)
    assert tester.run({"vector": []}) == []
    assert tester.failures[0].reason.endswith("vector is empty")
    assert tester.run({"values": [1]}) == []
    assert "expected" in tester.failures[0].reason


def test_runtime_exports_the_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # restored after the test
    allocation = {"gpus": [{"index": 0}], "node_id": "node-1", "cluster_id": "c1"}
    with EmbeddedRedis() as server:
        settings = Settings(
            block_id="gpu",
            redis_url_override=server.url,
            mgmt_port=free_port(),
            metrics_port=0,
            ws_port=0,
            control_bind="127.0.0.1",
            idle_wait_s=0.2,
            allocation_info=allocation,
        )
        runtime = Block(GpuBlock, settings).start()
        client = redis.Redis.from_url(server.url, protocol=2)
        try:
            client.lpush(keys.inputs("gpu"), make_packet({"vector": [1, 2]}).SerializeToString())
            item = client.brpop(["OUTPUT"], timeout=10)
            assert item is not None, "no output"
            out = json.loads(decode_packet(item[1]).data)
            assert out["device"] == ("cuda:0" if CUDA else "cpu")
            health = wait_for_health(f"http://127.0.0.1:{settings.mgmt_port}/health")
            assert health["cuda_visible_devices"] == "0"
            assert health["allocated_gpus"] == [{"index": 0}]
        finally:
            client.close()
            runtime.stop()
            assert runtime.wait(10)


def wait_for_health(url: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return httpx.get(url, timeout=5).json()["data"]
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def constructed(allocation: dict[str, Any] | None, document: dict[str, Any] | None = None) -> Any:
    """context.allocation_info of a Runtime built (not served) with this allocation (the
    runtime checks its Redis before it builds the block: a real one, on a free port)."""
    with EmbeddedRedis(free_port()) as server:
        settings = Settings(
            block_id="gpu",
            redis_url_override=server.url,
            mgmt_port=0,
            metrics_port=0,
            ws_port=0,
            allocation_info=allocation,
        )
        runtime = Runtime(GpuBlock, settings, BlockData(document or {}))
        runtime.redis.close()  # nothing is served
        state.set_default_redis(None)
    return runtime.context.allocation_info


@pytest.mark.parametrize(
    ("allocation", "document", "visible", "info"),
    [
        # the allocator gave no GPUs: hide them all
        ({"gpus": [], "node_id": "n1", "cluster_id": "c"}, None, "", ["n1", "c"]),
        # no allocation at all: the environment is left alone
        (None, None, "7", ["", ""]),
        # partial: the missing keys get defaults, and nothing said about GPUs keeps the env
        ({"node_id": "n2"}, None, "7", ["n2", ""]),
        ({"gpus": None, "cluster_id": "c3"}, None, "7", ["", "c3"]),
        # from the block data's allocationInfo, dict entries and bare indices alike
        (None, {"allocationInfo": {"gpus": [{"index": 3}, 5]}}, "3,5", ["", ""]),
    ],
)
def test_cuda_visible_devices_follows_the_allocation(
    monkeypatch: pytest.MonkeyPatch,
    allocation: dict[str, Any] | None,
    document: dict[str, Any] | None,
    visible: str,
    info: list[str],
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")  # restored after the test
    got = constructed(allocation, document)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible
    assert set(got) == {"gpus", "node_id", "cluster_id"}
    assert [got["node_id"], got["cluster_id"]] == info
    assert isinstance(got["gpus"], list)


def test_a_partial_allocation_is_completed_in_test_contexts_too() -> None:
    context = TestContext(allocation_info={"gpus": [0]})
    assert context.allocation_info == {"gpus": [0], "node_id": "", "cluster_id": ""}
    assert TestContext().allocation_info == {"gpus": [], "node_id": "", "cluster_id": ""}
