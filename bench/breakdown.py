"""Where the runtime's per-packet time goes, measured without a profiler's distortion.

    python -m bench.breakdown [-n 300000]

Peels the runtime in layers, each timed on the same packets in this process (best of 3):

1. the floors' work: ParseFromString → json.loads → threshold → json.dumps → Serialize;
2. the runtime's pure pipeline (``Pipeline.process_batch`` on batches of 64);
3. pipeline + worker + metrics hooks over the in-memory transport (no Redis);
4. end to end through Redis (a drain, as in ``bench.run``), for the batched floor and the
   runtime;

so layer differences give the cost of the worker's bookkeeping and of the Redis transport.
Then micro-timings of the single steps. Uses internal APIs: a dev tool, not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from aios_instance import _json
from aios_instance.embedded import EmbeddedRedis
from aios_instance.metrics import AIOSMetrics
from aios_instance.packet import decode_packet, encode_output
from aios_instance.routing import Router, destination_from_url
from aios_instance.runtime.hooks import MetricsHooks
from aios_instance.runtime.instruments import RuntimeMetrics
from aios_instance.runtime.pipeline import Pipeline
from aios_instance.runtime.worker import Worker
from aios_instance.testing import TestContext
from aios_instance.transport.base import Commit
from aios_instance.transport.memory import MemorySource
from aios_instance.transport.redis import RedisSource

from .blocks import ThresholdBlock
from .common import (
    BLOCK_ID,
    INPUT_LIST,
    OUTPUT_LIST,
    THRESHOLD,
    make_packet,
    output_ptr,
    pb_packet,
)
from .consumers import _work
from .harness import ROOT, Bench

__all__ = ["main"]

BATCH = 64
RESULTS = ROOT / "bench" / "results"


def _best_us(fn: Callable[[], object], packets: int, repeat: int = 3) -> float:
    best = min(timeit.repeat(fn, number=1, repeat=repeat))
    return best / packets * 1e6


def _pipeline(url: str) -> Pipeline:
    block = ThresholdBlock(TestContext())
    return Pipeline(block, Router(BLOCK_ID, (destination_from_url(url, "OUTPUT"),)))


def _layers(url: str, raws: Sequence[bytes]) -> dict[str, float]:
    n, cls = len(raws), pb_packet()
    batches = [raws[i : i + BATCH] for i in range(0, n, BATCH)]

    def floor_work() -> None:
        for raw in raws:
            _work(raw, THRESHOLD, cls).SerializeToString()

    def pipeline_only() -> None:
        pipeline = _pipeline(url)
        for batch in batches:
            pipeline.process_batch(batch)

    def with_worker() -> None:
        source = MemorySource(BLOCK_ID)
        source.inputs.extend(raws)
        metrics = RuntimeMetrics(AIOSMetrics(block_id=BLOCK_ID, instance_id="breakdown"))
        worker = Worker(
            _pipeline(url),
            source,
            lambda dest: None,
            block_id=BLOCK_ID,
            instance_id="breakdown",
            idle_wait_s=0.001,
            hooks=MetricsHooks(metrics),
        )
        while source.inputs or source.processing:  # the last batch was claimed ahead
            worker.step()
        assert sum(len(v) for v in source.lists.values()) == n

    return {
        "floor work (decode, json, encode)": _best_us(floor_work, n),
        "runtime pipeline (process_batch)": _best_us(pipeline_only, n),
        "pipeline + worker + hooks, in memory": _best_us(with_worker, n),
    }


def _micro(url: str, raw: bytes) -> dict[str, float]:
    """µs per call of single steps (timeit, 20,000 calls, best of 3)."""
    cls, pipeline = pb_packet(), _pipeline(url)
    packet = decode_packet(raw)
    block = pipeline.block
    entry = block.on_preprocess(packet)[1][0]
    output = {"value": 0.25, "passed": False}
    router = Router(BLOCK_ID, (destination_from_url(url, "OUTPUT"),))
    steps: dict[str, Callable[[], object]] = {
        "pb ParseFromString (floor)": lambda: cls().ParseFromString(raw),
        "decode_packet (runtime)": lambda: decode_packet(raw),
        "_json.validate (orjson)": lambda: _json.validate(packet.data),
        "json.loads (block)": lambda: json.loads(packet.data),
        "block.on_preprocess": lambda: block.on_preprocess(packet),
        "block.on_data": lambda: block.on_data(entry),
        "json.dumps (floor)": lambda: json.dumps(output),
        "_json.dumps (orjson)": lambda: _json.dumps(output),
        "encode_output (runtime)": lambda: encode_output(packet, '{"value":0.25}'),
        "Router.route (cached)": lambda: router.route(packet.output_ptr),
        "process_batch, 1 packet": lambda: pipeline.process_batch((raw,)),
    }
    calls = 20_000
    best_s = {name: min(timeit.repeat(fn, number=calls, repeat=3)) for name, fn in steps.items()}
    return {name: seconds / calls * 1e6 for name, seconds in best_s.items()}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _redis_ops(bench: Bench, redis_pid: int, raws: Sequence[bytes]) -> dict[str, dict[str, float]]:
    """The Redis traffic of one batch of 64, without the processing: wall and redis CPU.

    floor: BRPOP + RPOP 63 + LPUSH 64 (three round trips). runtime: what the worker's hot
    path sends, one MULTI per batch: LPUSH outputs + the trim script (a checked LTRIM: the
    ack of the whole claim) + the claim script for the next batch (RPOP, HLEN, LPUSH to the
    processing list).
    per-packet ack: RedisSource.claim, then a commit naming every packet (what a commit
    that is not one whole claim does: Lua LREM each), for comparison.
    """
    r, batches = bench.r, len(raws) // BATCH
    source = RedisSource(r, BLOCK_ID, "breakdown")
    dest = destination_from_url(bench.url, OUTPUT_LIST)

    def floor() -> None:
        for _ in range(batches):
            items = [r.brpop([INPUT_LIST], timeout=1)[1], *r.rpop(INPUT_LIST, BATCH - 1)]
            r.lpush(OUTPUT_LIST, *items)

    def runtime() -> None:  # the claim ahead rides with each commit, as in the worker
        for _ in range(batches):
            items = [c.raw for c in source.claim(BATCH, 0.0)]
            source.commit(Commit({dest: items}, items))

    def per_packet_ack() -> None:
        for _ in range(batches):
            items = [c.raw for c in source.claim(BATCH, 0.0)]
            source.commit(Commit({dest: items}, items[::-1]))  # not in claim order: by name

    n = batches * BATCH
    out: dict[str, dict[str, float]] = {}
    for _ in range(3):  # interleaved; the best of 3 of each
        for name, fn in (
            ("floor", floor),
            ("runtime", runtime),
            ("per-packet ack", per_packet_ack),
        ):
            bench.reset()
            bench.push(raws[:n])
            cpu0, t0 = _cpu_s(redis_pid), time.perf_counter()
            fn()
            wall, cpu = time.perf_counter() - t0, _cpu_s(redis_pid) - cpu0
            row = {"wall_us_per_packet": wall / n * 1e6, "redis_cpu_us_per_packet": cpu / n * 1e6}
            if name not in out or row["wall_us_per_packet"] < out[name]["wall_us_per_packet"]:
                out[name] = row
    return out


def _end_to_end(bench: Bench, raws: Sequence[bytes], ts: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, mode, extra in (
        ("batched", "batched", ("--batch", "64")),
        ("runtime", "runtime", ()),
    ):
        drain = bench.drain(name, mode, raws, ts, extra=extra)
        out[f"end to end via Redis: {name}"] = 1e6 / drain.pps
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.breakdown")
    p.add_argument("-n", "--packets", type=int, default=300_000)
    args = p.parse_args(argv)
    results: dict[str, Any] = {}
    with EmbeddedRedis() as server:
        bench = Bench(server.url, server.port, output_ptr(server.port))
        ts = time.time()
        raws = [make_packet(i, ts, bench.ptr) for i in range(args.packets)]
        results["layers_us_per_packet"] = _layers(server.url, raws)
        results["layers_us_per_packet"].update(_end_to_end(bench, raws, ts))
        results["micro_us_per_call"] = _micro(server.url, raws[1])
        assert server.pid is not None
        results["redis_ops"] = _redis_ops(bench, server.pid, raws[:64_000])
        bench.r.close()
    titles = (("µs per packet", "layers_us_per_packet"), ("µs per call", "micro_us_per_call"))
    for title, key in titles:
        print(f"\n{title}")
        for name, us in results[key].items():
            print(f"  {name:<40}{us:>8.2f}")
    print("\nRedis traffic only (batches of 64), µs per packet: wall, redis-server CPU")
    for name, row in results["redis_ops"].items():
        wall, cpu = row["wall_us_per_packet"], row["redis_cpu_us_per_packet"]
        print(f"  {name:<40}{wall:>8.2f}{cpu:>8.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "breakdown.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
