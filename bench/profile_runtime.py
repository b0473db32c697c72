"""Profile the runtime variant: where the per-packet time of the worker thread goes.

    python -m bench.profile_runtime                          # cProfile: µs/packet by function
    python -m bench.profile_runtime --profiler pyinstrument  # sampled tree (pip install it)

The runtime drains N preloaded packets exactly as in ``bench.run`` while the profiler watches
the worker (main) thread; the lease, metrics and control threads are not profiled. cProfile
inflates calls to small Python functions, so read its figures as shares, not absolute costs;
the unprofiled packets/s of ``bench.run`` are the reference. Reports go to bench/results/.
"""

from __future__ import annotations

import argparse
import io
import pstats
import sys
import time

from aios_instance.embedded import EmbeddedRedis

from .common import make_packet, output_ptr
from .harness import ROOT, Bench, BenchError

__all__ = ["main"]

RESULTS = ROOT / "bench" / "results"


def _cprofile_report(path: str, packets: int, top: int) -> str:
    stats = pstats.Stats(path)
    rows = []
    for (file, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = file.replace(str(ROOT) + "/", "")
        if "site-packages/" in where:
            where = where.split("site-packages/", 1)[1]
        rows.append((tottime, cumtime, calls, f"{where}:{line}({name})"))
    total = max(r[1] for r in rows)
    step = sum(
        r[1] for r in rows if r[3].startswith("aios_instance/worker.py") and "(step)" in r[3]
    )
    idle = sum(r[1] for r in rows if r[3].endswith("(blmove)"))
    out = io.StringIO()
    out.write(f"profiled process: {total / packets * 1e6:.1f} µs per packet (start to exit)\n")
    out.write(
        f"Worker.step less idle waits (BLMOVE): {(step - idle) / packets * 1e6:.1f} µs per packet\n"
    )
    for title, key in (("own time (tottime)", 0), ("cumulative time (cumtime)", 1)):
        out.write(f"\ntop {top} by {title}, µs per packet\n")
        out.write(f"{'own':>8}{'cum':>8}{'calls/pkt':>10}  function\n")
        for tot, cum, calls, label in sorted(rows, key=lambda r: -r[key])[:top]:
            own_us, cum_us = tot / packets * 1e6, cum / packets * 1e6
            out.write(f"{own_us:>8.2f}{cum_us:>8.2f}{calls / packets:>10.3f}  {label}\n")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_runtime")
    p.add_argument("--profiler", choices=["cprofile", "pyinstrument"], default="cprofile")
    p.add_argument("-n", "--packets", type=int, default=300_000)
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw_out = (
        RESULTS / f"profile-{args.profiler}.{'pstats' if args.profiler == 'cprofile' else 'txt'}"
    )
    extra = ("--profile", args.profiler, "--profile-out", str(raw_out))
    with EmbeddedRedis() as server:
        bench = Bench(server.url, server.port, output_ptr(server.port))
        ts = time.time()
        raws = [make_packet(i, ts, bench.ptr) for i in range(args.packets)]
        try:
            drain = bench.drain("runtime (profiled)", "runtime", raws, ts, extra=extra)
        except BenchError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.r.close()
    print(f"profiled runtime: {drain.pps:,.0f} packets/s over {args.packets:,} packets")
    if args.profiler == "cprofile":
        report = _cprofile_report(str(raw_out), args.packets, args.top)
        (RESULTS / "profile-cprofile.txt").write_text(report)
    else:
        report = raw_out.read_text()
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
