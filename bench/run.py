"""Benchmark the runtime against floors measured in the same run.

    python -m bench.run             # full run (throughput, latency, scaling); minutes
    python -m bench.run --quick     # smoke test: every variant completes with correct outputs
    python -m bench.run --soak      # the full run plus a 1,000,000-packet memory soak

Run from the repository root with the project's venv. Starts its own redis-server on
127.0.0.1 (EmbeddedRedis); every consumer is a separate process. Results go to stdout and to
``bench/results/latest.json`` (``quick.json`` for --quick). Then it runs ``bench.ingest``
(HTTP invoke and WebSocket; ``--quick`` too). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aios_instance.embedded import EmbeddedRedis

from . import endpoints, ingest
from .common import make_packet, output_ptr
from .harness import ROOT, Bench, BenchError, Drain
from .soak import soak

__all__ = ["main"]

RESULTS = ROOT / "bench" / "results"

# variant name → (consumer mode, instances, extra consumer arguments)
VARIANTS: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "naive": ("naive", 1, ()),
    "batched": ("batched", 1, ("--batch", "64")),
    "runtime": ("runtime", 1, ()),
    "runtime x2": ("runtime", 2, ()),
}
IO_VARIANTS: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "runtime io-5ms": ("runtime", 1, ("--sleep-ms", "5")),
    "runtime io-5ms x2": ("runtime", 2, ("--sleep-ms", "5")),
}


@dataclass(frozen=True)
class Plan:
    """How much of everything one run does."""

    packets: int
    naive_packets: int  # the naive floor is ~15x slower: fewer packets, same >= 5 s
    reps: int
    io_packets: int
    latency_rate: float
    latency_s: float
    verify_all: bool
    endpoint_packets: int = 0
    soak_packets: int = 0


FULL = Plan(
    packets=1_000_000,
    naive_packets=70_000,
    reps=3,
    io_packets=2_000,
    latency_rate=200,
    latency_s=5.0,
    verify_all=False,
    endpoint_packets=200_000,
)
QUICK = Plan(
    packets=3_000,
    naive_packets=3_000,
    reps=1,
    io_packets=100,
    latency_rate=200,
    latency_s=1.0,
    verify_all=True,
    endpoint_packets=2_000,
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test: correctness only, < 60 s")
    p.add_argument("--soak", action="store_true", help="add the memory soak (long)")
    p.add_argument("--soak-only", action="store_true", help="run only the memory soak")
    p.add_argument("--soak-packets", type=int, default=1_000_000)
    p.add_argument("-n", "--packets", type=int, help="packets per throughput run")
    p.add_argument("--naive-packets", type=int, help="packets per naive-floor run")
    p.add_argument("--reps", type=int, help="interleaved repetitions (median reported)")
    p.add_argument("--json", type=Path, help="where to write the results (default: bench/results/)")
    return p.parse_args(argv)


def _plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    packets = args.packets or plan.packets
    changes = {
        "packets": packets,
        "naive_packets": args.naive_packets or min(plan.naive_packets, packets),
        "reps": args.reps or plan.reps,
        "soak_packets": args.soak_packets if (args.soak or args.soak_only) else 0,
    }
    return Plan(**{**plan.__dict__, **changes})


# -- the measurements --------------------------------------------------------------------------
def _throughput(
    bench: Bench, plan: Plan, variants: dict[str, tuple[str, int, tuple[str, ...]]], n: int
) -> dict[str, list[Drain]]:
    """Interleaved repetitions: A, B, C, A, B, C, ... so drift hits every variant alike."""
    ts = time.time()
    raws = [make_packet(i, ts, bench.ptr) for i in range(n)]
    runs: dict[str, list[Drain]] = {name: [] for name in variants}
    for rep in range(plan.reps):
        for name, (mode, instances, extra) in variants.items():
            size = min(n, plan.naive_packets) if mode == "naive" else n
            drain = bench.drain(
                name,
                mode,
                raws[:size],
                ts,
                instances=instances,
                extra=extra,
                verify_all=plan.verify_all,
                timeout_s=max(60.0, n / 200),
            )
            runs[name].append(drain)
            print(
                f"  rep {rep + 1}/{plan.reps} {name:<18} {drain.pps:>10,.0f} packets/s "
                f"({drain.seconds:.2f} s)",
                flush=True,
            )
    return runs


def _summary(runs: dict[str, list[Drain]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, drains in runs.items():
        out[name] = {
            "median_packets_per_s": round(statistics.median(d.pps for d in drains), 1),
            "runs_packets_per_s": [round(d.pps, 1) for d in drains],
            "seconds": [round(d.seconds, 3) for d in drains],
            "peak_rss_mb": max(max(d.peak_rss_mb) for d in drains),
            "instances": len(drains[0].peak_rss_mb),
            "packets": drains[0].packets,
        }
    return out


def _ratios(summary: dict[str, Any]) -> dict[str, float]:
    def pps(name: str) -> float:
        return float(summary[name]["median_packets_per_s"])

    ratios = {}
    for floor in ("naive", "batched"):
        if "runtime" in summary and floor in summary:
            ratios[f"runtime/{floor}"] = round(pps("runtime") / pps(floor), 3)
    return ratios


def _measure(bench: Bench, plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if not args.soak_only:
        print(
            f"throughput: {plan.packets:,} packets per run ({plan.naive_packets:,} for the "
            f"naive floor), {plan.reps} interleaved reps"
        )
        summary = _summary(_throughput(bench, plan, VARIANTS, plan.packets))
        results["throughput"] = summary
        results["ratios"] = _ratios(summary)
        print(f"latency: {plan.latency_rate:g} packets/s for {plan.latency_s:g} s")
        results["latency"] = [
            bench.latency(name, name, plan.latency_rate, plan.latency_s)
            for name in ("naive", "runtime")
        ]
        print(f"I/O-bound block (on_data sleeps 5 ms): {plan.io_packets:,} packets per run")
        results["io_bound"] = _summary(_throughput(bench, plan, IO_VARIANTS, plan.io_packets))
        print(
            f"endpoints: {plan.endpoint_packets:,} local packets per run, with and without "
            "a silent endpoint; and remote outputs"
        )
        results["endpoints"] = endpoints.measure(bench, plan.endpoint_packets, plan.reps)
    if plan.soak_packets:
        print(f"soak: {plan.soak_packets:,} packets through one runtime instance")
        results["soak"] = soak(bench, plan.soak_packets)
    return results


# -- reporting ---------------------------------------------------------------------------------
def _meta(server: EmbeddedRedis, bench: Bench, plan: Plan) -> dict[str, Any]:
    from google.protobuf.internal import api_implementation
    from redis.utils import HIREDIS_AVAILABLE

    info = bench.r.info("server")
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "redis_server": info.get("redis_version"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "hiredis": HIREDIS_AVAILABLE,
        "protobuf_impl": api_implementation.Type(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--", "aios_instance")),
        "plan": plan.__dict__,
    }


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def _table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    for title, key in (
        ("Throughput (drain of a preloaded input)", "throughput"),
        ("I/O-bound block: on_data sleeps 5 ms", "io_bound"),
    ):
        if key not in results:
            continue
        some = next(iter(results[key].values()))
        lines += [
            f"\n{title}: median of {len(some['runs_packets_per_s'])} interleaved runs",
            f"{'variant':<20}{'packets':>9}{'packets/s':>12}   {'runs':<30}{'peak RSS MB':>12}",
        ]
        for name, row in results[key].items():
            runs = " ".join(f"{v:,.0f}" for v in row["runs_packets_per_s"])
            lines.append(
                f"{name:<20}{row['packets']:>9,}{row['median_packets_per_s']:>12,.0f}"
                f"   {runs:<30}{row['peak_rss_mb']:>12.1f}"
            )
    for name, ratio in results.get("ratios", {}).items():
        lines.append(f"{name:<20}{ratio:>11.2f}x")
    if "latency" in results:
        first = results["latency"][0]
        lines += [
            f"\nLatency push → output seen, {first['rate_per_s']:g} packets/s, "
            f"{first['packets']} packets",
            f"{'variant':<20}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}",
        ]
        for row in results["latency"]:
            lines.append(
                f"{row['variant']:<20}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}"
                f"{row['max_ms']:>10.2f}"
            )
    if "endpoints" in results:
        e = results["endpoints"]
        lines.append("\nEndpoints: local outputs/s (median), 1 packet in 100 to a silent endpoint")
        for name, pps in e["median_packets_per_s"].items():
            lines.append(f"{name:<20}{pps:>12,.0f}")
        for name, ratio in e["ratios"].items():
            lines.append(f"{name:<20}{ratio:>11.2f}x")
    if "soak" in results:
        s = results["soak"]
        curve = ", ".join(f"{x['processed']:,}: {x['rss_mb']}" for x in s["rss"])
        lines += [
            f"\nSoak: {s['packets']:,} packets at {s['packets_per_s']:,.0f} packets/s; "
            f"RSS MB after N packets: {curve}; peak {s['peak_rss_mb']}"
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    plan = _plan(args)
    target = args.json or RESULTS / ("quick.json" if args.quick else "latest.json")
    t0 = time.monotonic()
    with EmbeddedRedis() as server:
        bench = Bench(server.url, server.port, output_ptr(server.port))
        meta = _meta(server, bench, plan)
        try:
            results = {"meta": meta, **_measure(bench, plan, args)}
        except BenchError as exc:
            print(f"\nFAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.r.close()
    results["meta"]["wall_s"] = round(time.monotonic() - t0, 1)
    print(_table(results))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {target} ({results['meta']['wall_s']} s)")
    if args.quick:
        print("quick: every variant completed with correct outputs (timings not checked)")
    if args.soak_only:
        return 0
    print("\ningest: POST /infer against bare Starlette floors; WebSocket delta latency")
    return ingest.main(["--quick"] if args.quick else [])


if __name__ == "__main__":
    sys.exit(main())
