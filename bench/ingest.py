"""Benchmark the ingest: ``POST /infer`` against bare Starlette floors, and WebSocket delta
latency.

    python -m bench.ingest            # the full run (a few minutes)
    python -m bench.ingest --quick    # correctness only: every server answers correctly (< 20 s)

Run from the repository root with the project's venv. Every server and every load generator
is its own process on 127.0.0.1 (stopped by PID); the runtime uses its own embedded
redis-server. See docs/performance.md ("Ingest: HTTP invoke and WebSocket").

* HTTP: requests/s and latency of ``POST /infer`` for the spec's SimpleBlock served by a
  real runtime, against two floors on the same server stack (uvicorn, h11, one process,
  the control API's uvicorn settings) doing the same JSON work: ``floor-async`` (an
  ``async def`` endpoint) and ``floor-sync`` (the work on Starlette's threadpool, as a sync
  ``def`` endpoint runs, and as user code that may block must). Concurrency 1 and 32, with
  a load generator of keep-alive connections (asyncio, raw HTTP/1.1) whose CPU is reported.
* WebSocket: time from ``context.write_ws`` in the block (it writes ``time.time()``) to the
  client reading the message, N messages per job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
THRESHOLD = 0.5
SERVERS = ("floor-async", "floor-sync", "runtime")


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- the servers (each in its own process: --serve KIND) -------------------------------------
def _work(body: bytes) -> bytes:
    """The floors' job: what the runtime does for SimpleBlock, without the runtime."""
    job = json.loads(body)
    data = job["data"]
    if isinstance(data, str):
        data = json.loads(data)
    value = data.get("value", 0)
    answer = {
        "success": True,
        "session_id": job.get("session_id") or uuid.uuid4().hex,
        "seq_no": job.get("seq_no", 0),
        "outputs": [{"value": value, "passed": value > THRESHOLD}],
    }
    return json.dumps(answer).encode()


def _serve_floor(kind: str, port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def infer_async(request: Request) -> Response:
        return Response(_work(await request.body()), media_type="application/json")

    async def infer_sync(request: Request) -> Response:  # a sync endpoint, given the body
        body = await run_in_threadpool(_work, await request.body())
        return Response(body, media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b"ok")

    endpoint = infer_async if kind == "floor-async" else infer_sync
    app = Starlette(routes=[Route("/infer", endpoint, methods=["POST"]), Route("/ready", ready)])
    config = uvicorn.Config(  # the control API's settings (control/server.py), plain h11
        app,
        host="127.0.0.1",
        port=port,
        http="h11",
        proxy_headers=False,
        forwarded_allow_ips=[],
        log_level="warning",
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        server_header=False,
    )
    uvicorn.Server(config).run()


class Streamer:
    """``{"n": n}``: n ``write_ws`` messages ``{"delta", "i", "t": time.time()}``, then
    an output."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def on_preprocess(self, packet: Any) -> Any:
        from aios_instance import PreProcessResult

        return True, [PreProcessResult(packet=packet, extra_data=json.loads(packet.data))]

    def on_data(self, entry: Any, is_ws: bool = False) -> Any:
        from aios_instance import OnDataResult

        sid, n = entry.packet.session_id, entry.extra_data.get("n", 0)
        for i in range(n):
            self.context.write_ws(sid, {"delta": "tok", "i": i, "t": time.time()})
        return True, OnDataResult(output={"n": n})


def _serve_runtime(block: str, port: int, ws_port: int, redis_url: str) -> None:
    from aios_instance.runtime.block import Block
    from aios_instance.settings import Settings

    if block == "simple":
        sys.path.insert(0, str(ROOT))
        from examples.simple_block.block import SimpleBlock

        cls: type[Any] = SimpleBlock
    else:
        cls = Streamer
    settings = Settings(
        block_id=f"ingest-{block}",
        redis_url_override=redis_url,
        mgmt_port=port,
        metrics_port=0,
        ws_port=ws_port,
        control_bind="127.0.0.1",
        log_level="WARNING",
    )
    Block(cls, settings).run()


# -- load generators (each in its own process: --load / --ws-load) ---------------------------
async def _http_client(
    port: int, k: int, until: float, warm_until: float, lat: list[float], bad: list[str]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while (t0 := time.perf_counter()) < until:
            value = ((done * 37 + k) % 100) / 100
            body = json.dumps({"data": {"value": value}, "session_id": f"c{k}", "seq_no": done})
            head = f"POST /infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write((head + body).encode())
            status_head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in status_head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            reply = json.loads(await reader.readexactly(length))
            t1 = time.perf_counter()
            if not status_head.startswith(b"HTTP/1.1 200") or reply["outputs"] != [
                {"value": value, "passed": value > THRESHOLD}
            ]:
                bad.append(f"{status_head[:12]!r} {reply}")
            if t0 >= warm_until:
                lat.append(t1 - t0)
            done += 1
    finally:
        writer.close()
    return done


def _load(
    port: int, concurrency: int, duration_s: float, warmup_s: float, server_pid: int
) -> dict[str, Any]:
    """Keep-alive connections posting jobs for ``warmup_s + duration_s``; the figures are
    of the last ``duration_s``, the CPU shares (client and server) too."""
    lat: list[float] = []
    bad: list[str] = []
    cpu: dict[str, float] = {}

    async def window(warm_until: float, until: float) -> None:
        await asyncio.sleep(warm_until - time.perf_counter())
        cpu["client"], cpu["server"] = time.process_time(), _cpu_s(server_pid)
        await asyncio.sleep(until - time.perf_counter())
        cpu["client"] = time.process_time() - cpu["client"]
        cpu["server"] = _cpu_s(server_pid) - cpu["server"]

    async def run() -> None:
        now = time.perf_counter()
        warm_until, until = now + warmup_s, now + warmup_s + duration_s
        await asyncio.gather(
            window(warm_until, until),
            *(_http_client(port, k, until, warm_until, lat, bad) for k in range(concurrency)),
        )

    asyncio.run(run())
    return {
        "requests": len(lat),
        "errors": len(bad),
        "first_error": bad[0] if bad else None,
        "rps": len(lat) / duration_s,
        "p50_ms": _percentile(lat, 50) * 1e3,
        "p99_ms": _percentile(lat, 99) * 1e3,
        "client_cpu": cpu["client"] / duration_s,
        "server_cpu": cpu["server"] / duration_s,
    }


def _ws_load(url: str, jobs: int, messages: int, conns: int) -> dict[str, Any]:
    from websockets.sync.client import connect

    delays: list[float] = []
    bad: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        mine: list[float] = []
        with connect(url, open_timeout=10, max_size=None) as ws:
            for j in range(jobs):
                ws.send(json.dumps({"session_id": f"w{k}", "seq_no": j, "data": {"n": messages}}))
                seen = 0
                while True:
                    message = json.loads(ws.recv(timeout=10))
                    if "t" in message:
                        mine.append(time.time() - message["t"])
                        seen += message["i"] == seen
                        continue
                    if message.get("output") != {"n": messages} or seen != messages:
                        bad.append(f"job {j}: {seen} deltas, then {message}")
                    break
        with lock:
            delays.extend(mine[messages:])  # the first job warms up

    threads = [threading.Thread(target=client, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return {
        "messages": len(delays),
        "errors": len(bad),
        "first_error": bad[0] if bad else None,
        "p50_ms": _percentile(delays, 50) * 1e3,
        "p99_ms": _percentile(delays, 99) * 1e3,
    }


def _cpu_s(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


# -- the orchestration -------------------------------------------------------------------------
def _free_port() -> int:
    from aios_instance.embedded import free_port

    return free_port()


class Server:
    """A server process (``--serve``), ready once GET /ready answers 200; stopped by PID."""

    def __init__(self, kind: str, *args: str) -> None:
        self.kind, self.port = kind, _free_port()
        argv = [sys.executable, "-m", "bench.ingest", "--serve", kind, "--port", str(self.port)]
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-ingest-{kind}-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([*argv, *args], cwd=ROOT, stdout=log, stderr=log)
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        import http.client

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} not ready within {timeout_s:g}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.unlink(missing_ok=True)


def _child(*argv: str, timeout_s: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.ingest", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def _http_round(server: Server, c: int, duration_s: float, warmup_s: float) -> dict[str, Any]:
    argv = ("--load", "--port", str(server.port), "--concurrency", str(c))
    argv += ("--server-pid", str(server.proc.pid), "--duration", str(duration_s))
    result = _child(*argv, "--warmup", str(warmup_s), timeout_s=120)
    if result["errors"]:
        raise RuntimeError(f"{server.kind} c={c}: {result['errors']} wrong answers: {result}")
    return result


def _measure(quick: bool, redis_url: str) -> dict[str, Any]:
    duration, warmup, reps = (0.5, 0.1, 1) if quick else (5.0, 1.0, 3)
    levels = (1, 4) if quick else (1, 32)
    servers = {
        "floor-async": Server("floor-async"),
        "floor-sync": Server("floor-sync"),
        "runtime": Server("runtime", "--block", "simple", "--redis", redis_url),
    }
    http: dict[str, Any] = {}
    try:
        for c in levels:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
            for _ in range(reps):  # interleaved, so drift hits every server alike
                for name, server in servers.items():
                    runs[name].append(_http_round(server, c, duration, warmup))
            http[f"c={c}"] = {name: _median(rs) for name, rs in runs.items()}
    finally:
        for server in servers.values():
            server.stop()
    ws_port = _free_port()
    ws_server = Server(
        "runtime", "--block", "stream", "--redis", redis_url, "--ws-port", str(ws_port)
    )
    try:
        ws_url = f"ws://127.0.0.1:{ws_port}"
        jobs, messages = (3, 5) if quick else (200, 20)
        ws = {
            f"conns={k}": _child(
                *("--ws-load", ws_url, "--jobs", str(jobs), "--messages", str(messages)),
                *("--conns", str(k)),
                timeout_s=180,
            )
            for k in ((1,) if quick else (1, 8))
        }
    finally:
        ws_server.stop()
    for name, result in ws.items():
        if result["errors"]:
            raise RuntimeError(f"WebSocket {name}: {result['errors']} wrong: {result}")
    return {"http": http, "ws": ws, "ws_messages_per_job": messages}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median requests/s (its latencies with it), and every run's rps."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    return {**ordered[len(ordered) // 2], "rps_runs": [round(r["rps"]) for r in runs]}


def _table(results: dict[str, Any]) -> str:
    lines = [
        "| concurrency | server | requests/s | p50 ms | p99 ms | vs floor-async | "
        "vs floor-sync | server CPU | client CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for level, by in results["http"].items():
        for name in SERVERS:
            r = by[name]
            ratios = [f"{r['rps'] / by[f]['rps']:.2f}x" for f in ("floor-async", "floor-sync")]
            lines.append(
                f"| {level} | {name} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{' | '.join(ratios)} | {r['server_cpu']:.0%} | {r['client_cpu']:.0%} |"
            )
    lines += ["", "| WebSocket | messages | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: |"]
    for name, r in results["ws"].items():
        lines.append(f"| {name} | {r['messages']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    return "\n".join(lines)


def _orchestrate(quick: bool) -> int:
    from aios_instance.embedded import EmbeddedRedis

    started = time.perf_counter()
    with EmbeddedRedis() as redis_server:
        results = _measure(quick, redis_server.url)
    results["meta"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "quick": quick,
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("ingest-quick.json" if quick else "ingest.json")
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results))
    print(f"\n{'quick: every answer correct; ' if quick else ''}results in {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="correctness only, a few requests each")
    p.add_argument(
        "--serve", choices=("floor-async", "floor-sync", "runtime"), help=argparse.SUPPRESS
    )
    p.add_argument("--block", default="simple", help=argparse.SUPPRESS)
    p.add_argument("--redis", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ws-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--duration", type=float, default=5.0, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--ws-load", help=argparse.SUPPRESS)
    p.add_argument("--jobs", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--messages", type=int, default=20, help=argparse.SUPPRESS)
    p.add_argument("--conns", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve == "runtime":
        _serve_runtime(args.block, args.port, args.ws_port, args.redis)
    elif args.serve:
        _serve_floor(args.serve, args.port)
    elif args.load:
        load = _load(args.port, args.concurrency, args.duration, args.warmup, args.server_pid)
        print(json.dumps(load))
    elif args.ws_load:
        print(json.dumps(_ws_load(args.ws_load, args.jobs, args.messages, args.conns)))
    else:
        return _orchestrate(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
