"""Consumer processes and the measurements made on them (throughput, latency, soak).

Everything talks to one embedded redis-server on 127.0.0.1. Every wait is bounded; a consumer
that dies or a run that exceeds its deadline raises `BenchError` with the consumer's log tail.
Processes are stopped by PID (SIGTERM, then SIGKILL after a timeout).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from .common import (
    BLOCK_ID,
    DEAD_LIST,
    INPUT_LIST,
    OUTPUT_LIST,
    check_output,
    decode,
    make_packet,
    ready_key,
)

__all__ = [
    "Bench",
    "BenchError",
    "Consumer",
    "percentile",
]

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.005  # LLEN polling interval while a drain runs
_ids = itertools.count(1)


class BenchError(Exception):
    """A variant did not complete, or its outputs were wrong."""


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (pct in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _wait_ready(consumer: Consumer, r: redis.Redis, timeout_s: float) -> None:
    """Wait until ``consumer`` serves, or has exited, or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while consumer.proc.poll() is None and not consumer.ready(r):
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)


class Consumer:
    """One consumer subprocess (``python -m bench.consumers MODE ...``)."""

    def __init__(self, mode: str, url: str, *extra: str) -> None:
        self.mode = mode
        self.instance_id = f"{mode}-{os.getpid()}-{next(_ids)}"
        self._log = tempfile.TemporaryFile(prefix="aios-bench-")  # noqa: SIM115 - closed in close()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOS_", "REDIS_"))}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        args = ["--redis-url", url, "--instance-id", self.instance_id, *extra]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.consumers", mode, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ready(self, r: redis.Redis) -> bool:
        """Whether it serves: the floors set a ready key, the runtime takes its lease."""
        key = f"aios:{BLOCK_ID}:lease:{self.instance_id}" if self.mode == "runtime" else None
        return bool(r.exists(key or ready_key(self.instance_id)))

    def check_alive(self) -> None:
        rc = self.proc.poll()
        if rc is not None:
            raise BenchError(f"{self.mode} consumer exited with {rc}:\n{self.log_tail()}")

    def memory_kb(self, field_name: str) -> int | None:
        """VmRSS / VmHWM (peak RSS) of the process, in kB, from /proc."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(field_name + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, wait, SIGKILL if it does not exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        return int(self.proc.returncode)

    def log_tail(self, chars: int = 3000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-chars:]

    def close(self) -> None:
        self.stop()
        self._log.close()


@dataclass
class Drain:
    """One throughput run: N preloaded packets drained by ``instances`` consumers."""

    variant: str
    packets: int
    seconds: float
    peak_rss_mb: list[float]
    exit_codes: list[int] = field(default_factory=list)

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "packets": self.packets,
            "seconds": round(self.seconds, 4),
            "packets_per_s": round(self.pps, 1),
            "peak_rss_mb": self.peak_rss_mb,
            "exit_codes": self.exit_codes,
        }


class Bench:
    """Measurements against one Redis (``url``/``port``) on 127.0.0.1."""

    def __init__(self, url: str, port: int, ptr: str) -> None:
        self.url = url
        self.port = port
        self.ptr = ptr
        self.r = redis.Redis.from_url(url, protocol=2, socket_timeout=30.0)

    # -- helpers ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty the benchmark's Redis (only our own server: it was started for this run)."""
        self.r.flushdb()

    def push(self, raws: Sequence[bytes], chunk: int = 2000) -> None:
        """LPUSH in order (the consumers take from the right: FIFO)."""
        pipe = self.r.pipeline(transaction=False)
        for i in range(0, len(raws), chunk):
            pipe.lpush(INPUT_LIST, *raws[i : i + chunk])
            if len(pipe) >= 16:
                pipe.execute()
        pipe.execute()

    def start(self, mode: str, *extra: str, timeout_s: float = 30.0) -> Consumer:
        """Spawn a consumer and wait until it serves."""
        consumer = Consumer(mode, self.url, *extra)
        deadline = time.monotonic() + timeout_s
        try:
            while not consumer.ready(self.r):
                consumer.check_alive()
                if time.monotonic() > deadline:
                    raise BenchError(f"{mode} not ready in {timeout_s}s:\n{consumer.log_tail()}")
                time.sleep(0.02)
        except BaseException:
            consumer.close()
            raise
        return consumer

    def _lens(self) -> tuple[int, int]:
        pipe = self.r.pipeline(transaction=False)
        pipe.llen(INPUT_LIST)
        pipe.llen(OUTPUT_LIST)
        inputs, outputs = pipe.execute()
        return int(inputs), int(outputs)

    # -- throughput ------------------------------------------------------------------------
    def drain(
        self,
        variant: str,
        mode: str,
        raws: Sequence[bytes],
        ts: float,
        *,
        instances: int = 1,
        extra: Sequence[str] = (),
        verify_all: bool = False,
        timeout_s: float = 300.0,
    ) -> Drain:
        """Preload ``raws``, start the consumers, time first pop → last output seen."""
        self.reset()
        self.push(raws)
        n = len(raws)
        consumers: list[Consumer] = []
        try:
            for _ in range(instances):
                consumers.append(Consumer(mode, self.url, *extra))
            seconds = self._time_drain(n, consumers, timeout_s)
            time.sleep(0.05)  # anything beyond N would be a duplicate: let it show
            self.verify(n, ts, verify_all=verify_all)
            peaks = [(c.memory_kb("VmHWM") or 0) / 1024 for c in consumers]
        finally:
            # A consumer that is still starting when the others have drained everything
            # (two instances, few packets) is stopped once it serves, not mid-start.
            for c in consumers:
                _wait_ready(c, self.r, 30.0)
            codes = [c.stop() for c in consumers]
            for c in consumers:
                c.close()
        if mode == "runtime" and any(codes):
            raise BenchError(f"{variant}: runtime exit codes {codes}")
        return Drain(variant, n, seconds, [round(p, 1) for p in peaks], codes)

    def _time_drain(self, n: int, consumers: Sequence[Consumer], timeout_s: float) -> float:
        """Poll LLEN; an event is placed midway between the polls that saw before and after."""
        deadline = time.monotonic() + timeout_s
        prev = time.perf_counter()
        first_pop: float | None = None
        while True:
            before = time.perf_counter()
            inputs, outputs = self._lens()
            seen = (before + time.perf_counter()) / 2
            if first_pop is None and inputs < n:
                first_pop = (prev + seen) / 2
            if outputs >= n and first_pop is not None:
                return max((prev + seen) / 2 - first_pop, 1e-6)
            for c in consumers:
                c.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout_s}s: {outputs} of {n} outputs")
            prev = seen
            time.sleep(POLL_S)

    def verify(self, n: int, ts: float | None, *, verify_all: bool) -> None:
        """Exactly n correct outputs, an empty input and no dead letters."""
        inputs, outputs = self._lens()
        dead = self.r.lrange(DEAD_LIST, 0, 0)
        if dead:
            raise BenchError(f"dead letters: {dead[0][:500]!r}")
        if outputs != n or inputs:
            raise BenchError(f"{outputs} outputs for {n} inputs ({inputs} inputs left)")
        if verify_all:
            raws = self.r.lrange(OUTPUT_LIST, 0, -1)
        else:
            raws = self.r.lrange(OUTPUT_LIST, 0, 9) + self.r.lrange(OUTPUT_LIST, -10, -1)
        try:
            seqs = [check_output(raw, self.ptr, ts) for raw in raws]
        except AssertionError as exc:
            raise BenchError(str(exc)) from None
        if verify_all and sorted(seqs) != list(range(n)):
            raise BenchError("outputs are not one per input (duplicates or gaps in seq_no)")

    # -- latency ---------------------------------------------------------------------------
    def latency(
        self, variant: str, mode: str, rate: float, duration_s: float, warmup: int = 50
    ) -> dict[str, Any]:
        """Push at ``rate`` packets/s (ts = push time); a reader BRPOPs outputs: now - ts."""
        self.reset()
        consumer = self.start(mode)
        try:
            self._warm(consumer, warmup)
            total = max(1, int(rate * duration_s))
            samples = self._paced(consumer, rate, total)
        finally:
            consumer.close()
        ms = [s * 1000 for s in samples]
        return {
            "variant": variant,
            "rate_per_s": rate,
            "packets": total,
            "p50_ms": round(percentile(ms, 50), 3),
            "p99_ms": round(percentile(ms, 99), 3),
            "max_ms": round(max(ms), 3),
        }

    def _warm(self, consumer: Consumer, count: int) -> None:
        now = time.time()
        self.push([make_packet(i, now, self.ptr) for i in range(count)])
        deadline = time.monotonic() + 30.0
        while self._lens()[1] < count:
            consumer.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"warm-up: no outputs\n{consumer.log_tail()}")
            time.sleep(0.01)
        self.r.delete(OUTPUT_LIST)

    def _paced(self, consumer: Consumer, rate: float, total: int) -> list[float]:
        samples: list[float] = []
        errors: list[str] = []
        reader = threading.Thread(target=self._read, args=(total, samples, errors), daemon=True)
        reader.start()
        producer = redis.Redis.from_url(self.url, protocol=2, socket_timeout=10.0)
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            producer.lpush(INPUT_LIST, make_packet(i, time.time(), self.ptr))
        producer.close()
        reader.join(30.0)
        consumer.check_alive()
        if errors or len(samples) != total:
            raise BenchError(f"latency: {len(samples)} of {total} outputs; {errors[:1]}")
        return samples

    def _read(self, total: int, samples: list[float], errors: list[str]) -> None:
        reader = redis.Redis.from_url(self.url, protocol=2, socket_timeout=10.0)
        deadline = time.monotonic() + 30.0 + total / 10
        try:
            while len(samples) < total and time.monotonic() < deadline:
                item = reader.brpop([OUTPUT_LIST], timeout=1)
                if item is not None:
                    now = time.time()
                    check_output(item[1], self.ptr)
                    samples.append(now - decode(item[1]).ts)
        except Exception as exc:  # reported by the producer side
            errors.append(repr(exc))
        finally:
            reader.close()
