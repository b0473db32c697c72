"""Memory that producers control is bounded: a process's RSS comes back under a bound after
100 distinct 4 MB ``output_ptr``s, and after outputs to 3,000 unreachable endpoints."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from aios_instance import keys
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.packet import make_packet
from tests.support import SIMPLE_BLOCK, eventually
from tests.system.test_faults import Procs, _client

RSS_SLACK_MB = 80  # what the process may keep above its serving size once the burst is over


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _serving(client: redis.Redis, block_id: str) -> bool:
    return bool(client.smembers(keys.instances(block_id)))


@pytest.mark.slow
def test_rss_comes_back_after_100_distinct_4_mb_output_ptrs(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs, tmp_path: Path
) -> None:
    server = redis_factory()
    client = _client(server.url)
    block = procs.block(SIMPLE_BLOCK, server.url, "m", AIOS_CLAIM_BATCH="8", AIOS_LEASE_TTL_S="1")
    eventually(lambda: _serving(client, "m"), what="the block to serve")
    base = _rss_mb(block.pid)
    dest = {"host": "127.0.0.1", "port": server.port, "queue_name": "OUT", "block_id": "x"}
    for i in range(100):
        ptr = json.dumps({"outputs": [dest], "pad": f"{i:03d}" + "x" * (4 << 20)})
        client.lpush(
            keys.inputs("m"), make_packet({"i": i}, seq_no=i, output_ptr=ptr).SerializeToString()
        )
    eventually(lambda: client.llen("OUT") == 100, 120, "every output")
    client.delete("OUT")  # the outputs carry the pointer too: 400 MB in this Redis
    # Given back within a few lease renewals (AIOS_LEASE_TTL_S=1: every 1/3 s).
    eventually(
        lambda: _rss_mb(block.pid) < base + RSS_SLACK_MB, 15, f"RSS under {base:.0f} MB + slack"
    )
    block.send_signal(signal.SIGTERM)
    assert block.wait(20) == 0
    client.close()


@pytest.mark.slow
def test_rss_comes_back_after_outputs_to_3000_unreachable_endpoints(
    redis_factory: Callable[[], EmbeddedRedis], procs: Procs, tmp_path: Path
) -> None:
    server = redis_factory()
    client = _client(server.url)
    env = {"AIOS_DELIVERY_TIMEOUT_S": "2", "AIOS_LEASE_TTL_S": "1"}
    block = procs.block(SIMPLE_BLOCK, server.url, "e", **env)
    eventually(lambda: _serving(client, "e"), what="the block to serve")
    base = _rss_mb(block.pid)
    closed = [free_port() for _ in range(3)]  # nothing listens there
    pipe = client.pipeline(transaction=False)
    for i in range(3_000):
        # 3,000 distinct endpoints (server and database) that refuse connections
        dest = {"host": "127.0.0.1", "port": closed[i % 3], "db": i // 3, "queue_name": "q"}
        ptr = json.dumps({"outputs": [dest]})
        pipe.lpush(
            keys.inputs("e"), make_packet({"i": i}, seq_no=i, output_ptr=ptr).SerializeToString()
        )
    pipe.execute()
    eventually(lambda: client.llen(keys.dead_letters("e")) == 3_000, 120, "every dead letter")
    eventually(
        lambda: _rss_mb(block.pid) < base + RSS_SLACK_MB, 15, f"RSS under {base:.0f} MB + slack"
    )
    block.send_signal(signal.SIGTERM)
    assert block.wait(20) == 0
    client.close()
