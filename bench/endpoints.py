"""Endpoints: local-output throughput with a silent endpoint present, and remote outputs.

    python -m bench.endpoints            # 200,000 local packets per run, 3 interleaved reps
    python -m bench.endpoints --quick    # correctness only

Three variants, each a runtime consumer draining a preloaded input, interleaved so that
drift hits every variant alike:

- ``local``: every output goes to the runtime's own Redis (the floor of this comparison);
- ``local + tarpit``: the same packets, plus 1 in 100 routed to a *tarpit*, a TCP endpoint on
  127.0.0.1 that accepts connections and never answers; timed to the last local output;
- ``remote``: every output goes to a second redis-server (pushed by the endpoint's sender).

Goal (issue 9): ``local + tarpit`` >= 0.8x ``local``. Also run by ``python -m bench.run``.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from typing import Any

import redis

from aios_instance.embedded import EmbeddedRedis

from .common import INPUT_LIST, OUTPUT_LIST, make_packet, output_ptr
from .harness import POLL_S, Bench, BenchError, Consumer

__all__ = ["Tarpit", "measure"]

TARPIT_EVERY = 100  # one packet in this many goes to the tarpit


class Tarpit:
    """Accepts TCP connections on 127.0.0.1 and never answers (until closed)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)  # held open, never read from or written to

    def close(self) -> None:
        self._sock.close()
        for conn in self._conns:
            conn.close()


def _tarpit_ptr(port: int) -> str:
    dest = {"host": "127.0.0.1", "port": port, "queue_name": "never", "block_id": "tarpit"}
    return json.dumps({"outputs": [dest]})


def _drain(bench: Bench, raws: list[bytes], local: int, out: redis.Redis) -> float:
    """Preload, start one runtime, time first pop → ``local`` outputs seen on ``out``."""
    bench.reset()
    out.delete(OUTPUT_LIST)
    bench.push(raws)
    consumer = Consumer("runtime", bench.url, "--drain-timeout-s", "1")
    try:
        deadline = time.monotonic() + max(60.0, len(raws) / 500)
        first = None
        while True:
            seen = time.perf_counter()
            if first is None and bench.r.llen(INPUT_LIST) < len(raws):
                first = seen
            if first is not None and out.llen(OUTPUT_LIST) >= local:
                elapsed = seen - first
                break
            consumer.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"timed out: {out.llen(OUTPUT_LIST)} of {local} outputs")
            time.sleep(POLL_S)
    finally:
        code = consumer.stop()
        consumer.close()
    if code != 0:
        raise BenchError(f"runtime exited with {code}:\n{consumer.log_tail()}")
    if out.llen(OUTPUT_LIST) != local:
        raise BenchError(f"{out.llen(OUTPUT_LIST)} outputs, expected {local}")
    return max(elapsed, 1e-6)


def measure(bench: Bench, packets: int, reps: int) -> dict[str, Any]:
    """The three variants, interleaved; medians in packets/s and the ratios."""
    tarpit = Tarpit()
    with EmbeddedRedis() as downstream:
        down = redis.Redis.from_url(downstream.url, protocol=2)
        ts = time.time()
        local = [make_packet(i, ts, bench.ptr) for i in range(packets)]
        trap = _tarpit_ptr(tarpit.port)
        mixed = [
            raw
            for i in range(packets)
            for raw in (
                [local[i], make_packet(i, ts, trap)] if i % TARPIT_EVERY == 0 else [local[i]]
            )
        ]
        remote = [make_packet(i, ts, output_ptr(downstream.port)) for i in range(packets)]
        variants = {
            "local": (local, bench.r),
            "local + tarpit": (mixed, bench.r),
            "remote": (remote, down),
        }
        runs: dict[str, list[float]] = {name: [] for name in variants}
        try:
            for rep in range(reps):
                for name, (raws, out) in variants.items():
                    seconds = _drain(bench, raws, packets, out)
                    runs[name].append(packets / seconds)
                    rate = packets / seconds
                    print(f"  rep {rep + 1}/{reps} {name:<16} {rate:>10,.0f} local outputs/s")
        finally:
            down.close()
            tarpit.close()
    medians = {name: round(statistics.median(v), 1) for name, v in runs.items()}
    return {
        "packets": packets,
        "tarpit_every": TARPIT_EVERY,
        "median_packets_per_s": medians,
        "runs_packets_per_s": {k: [round(x, 1) for x in v] for k, v in runs.items()},
        "ratios": {
            "tarpit/local": round(medians["local + tarpit"] / medians["local"], 3),
            "remote/local": round(medians["remote"] / medians["local"], 3),
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.endpoints", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="correctness only")
    p.add_argument("-n", "--packets", type=int, default=200_000)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    packets, reps = (2_000, 1) if args.quick else (args.packets, args.reps)
    with EmbeddedRedis() as server:
        bench = Bench(server.url, server.port, output_ptr(server.port))
        try:
            result = measure(bench, packets, reps)
        except BenchError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.r.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
