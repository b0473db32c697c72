"""Memory soak: a long stream through one runtime instance, RSS sampled along the way.

The input is fed in chunks (it never holds more than ``low + chunk`` packets) and the output
list is counted and emptied atomically (MULTI: LLEN + DEL), so Redis stays small however long
the soak runs.
"""

from __future__ import annotations

import time
from typing import Any

from .common import DEAD_LIST, INPUT_LIST, OUTPUT_LIST, check_output, make_packet
from .harness import Bench, BenchError, Consumer

__all__ = ["soak"]


def soak(
    bench: Bench,
    total: int = 1_000_000,
    *,
    chunk: int = 50_000,
    low: int = 50_000,
    sample_every: int = 100_000,
    timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """Run ``total`` packets through one runtime; RSS at start, every ``sample_every``, end."""
    bench.reset()
    consumer = bench.start("runtime")
    try:
        return _run(bench, consumer, total, chunk, low, sample_every, timeout_s)
    finally:
        consumer.close()


def _rss_mb(consumer: Consumer, name: str = "VmRSS") -> float:
    return round((consumer.memory_kb(name) or 0) / 1024, 1)


def _run(
    bench: Bench,
    consumer: Consumer,
    total: int,
    chunk: int,
    low: int,
    sample_every: int,
    timeout_s: float,
) -> dict[str, Any]:
    r, ts = bench.r, time.time()
    samples = [{"processed": 0, "rss_mb": _rss_mb(consumer)}]
    marks = [min(10_000, total), *range(sample_every, total + 1, sample_every)]
    pushed = done = 0
    deadline = time.monotonic() + timeout_s
    t0 = time.perf_counter()
    while done < total:
        if pushed < total and int(r.llen(INPUT_LIST)) < low:
            count = min(chunk, total - pushed)
            bench.push([make_packet(pushed + i, ts, bench.ptr) for i in range(count)])
            pushed += count
        done += _take_outputs(bench, ts)
        while marks and done >= marks[0]:
            samples.append({"processed": marks.pop(0), "rss_mb": _rss_mb(consumer)})
        consumer.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"soak timed out: {done} of {total} outputs")
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    time.sleep(0.2)
    extra = _take_outputs(bench, ts)
    if extra or done != total or r.llen(DEAD_LIST):
        raise BenchError(f"soak: {done + extra} outputs for {total} inputs, dead letters?")
    return {
        "packets": total,
        "seconds": round(seconds, 2),
        "packets_per_s": round(total / seconds, 1),
        "rss": samples,
        "peak_rss_mb": _rss_mb(consumer, "VmHWM"),
    }


def _take_outputs(bench: Bench, ts: float) -> int:
    """Check one output, then count and delete the output list in one transaction."""
    newest = bench.r.lindex(OUTPUT_LIST, 0)
    if newest is not None:
        try:
            check_output(newest, bench.ptr, ts)
        except AssertionError as exc:
            raise BenchError(f"soak: {exc}") from None
    pipe = bench.r.pipeline(transaction=True)
    pipe.llen(OUTPUT_LIST)
    pipe.delete(OUTPUT_LIST)
    count, _ = pipe.execute()
    return int(count)
