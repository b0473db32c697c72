"""The consumer processes the benchmark compares; each runs until SIGTERM.

    python -m bench.consumers naive   --redis-url URL --instance-id ID
    python -m bench.consumers batched --redis-url URL --instance-id ID [--batch 64]
    python -m bench.consumers runtime --redis-url URL --instance-id ID [--sleep-ms 5]
                                      [--profile cprofile|pyinstrument --profile-out PATH]

``naive`` and ``batched`` are the floors: the least code that does the job correctly with
redis-py (hiredis, RESP2) and the generated protobuf class, no acknowledgements, no leases.
``runtime`` is ``Block(ThresholdBlock, Settings(...)).run()`` with the runtime's defaults
(claim batch 64, leases, acknowledgements, metrics and control API on free ports).
"""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import redis

from .common import BLOCK_ID, INPUT_LIST, THRESHOLD, pb_packet, ready_key

__all__ = ["main", "run_batched", "run_naive", "run_runtime"]


# -- floors ------------------------------------------------------------------------------------
class _Stop:
    """Set by SIGTERM/SIGINT; the floors check it between blocking pops."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGTERM, self._handler)
        signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.set = True


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, protocol=2, socket_timeout=10.0)


def _queue_of(cache: dict[str, str], ptr: str) -> str:
    """The output list of an output_ptr (parsed once per distinct string)."""
    queue = cache.get(ptr)
    if queue is None:
        queue = cache[ptr] = json.loads(ptr)["outputs"][0]["queue_name"]
    return queue


def _work(raw: Any, threshold: float, packet_class: Any) -> Any:
    """ParseFromString → json.loads → threshold → json.dumps; the message is reused as output."""
    msg = packet_class()
    msg.ParseFromString(raw)
    value = json.loads(msg.data).get("value", 0)
    msg.data = json.dumps({"value": value, "passed": value > threshold})
    return msg


def run_naive(url: str, instance_id: str, **_: Any) -> None:
    """BRPOP one packet, process it, LPUSH its output: two round trips per packet."""
    r, stop, routes = _client(url), _Stop(), {}  # type: ignore[var-annotated]
    packet_class = pb_packet()
    r.set(ready_key(instance_id), "1")
    while not stop.set:
        item = r.brpop([INPUT_LIST], timeout=0.5)
        if item is None:
            continue
        msg = _work(item[1], THRESHOLD, packet_class)
        r.lpush(_queue_of(routes, msg.output_ptr), msg.SerializeToString())


def run_batched(url: str, instance_id: str, batch: int = 64, **_: Any) -> None:
    """BRPOP one packet + RPOP up to batch-1 more, process, one variadic LPUSH per list."""
    r, stop, routes = _client(url), _Stop(), {}  # type: ignore[var-annotated]
    packet_class = pb_packet()
    r.set(ready_key(instance_id), "1")
    while not stop.set:
        item = r.brpop([INPUT_LIST], timeout=0.5)
        if item is None:
            continue
        raws: list[Any] = [item[1]]
        more = r.rpop(INPUT_LIST, batch - 1) if batch > 1 else None
        if more:
            raws.extend(more)
        outs: dict[str, list[bytes]] = {}
        for raw in raws:
            msg = _work(raw, THRESHOLD, packet_class)
            outs.setdefault(_queue_of(routes, msg.output_ptr), []).append(msg.SerializeToString())
        for queue, payloads in outs.items():
            r.lpush(queue, *payloads)


# -- the runtime -------------------------------------------------------------------------------
def run_runtime(
    url: str,
    instance_id: str,
    sleep_ms: float = 0.0,
    claim_batch: int = 64,
    drain_timeout_s: float = 10.0,
    profile: str | None = None,
    profile_out: str | None = None,
    **_: Any,
) -> None:
    """``Block(ThresholdBlock, Settings(...)).run()`` until SIGTERM, optionally profiled."""
    from aios_instance import Block, Settings
    from aios_instance.embedded import free_port

    from .blocks import SleepyBlock, ThresholdBlock

    block_class: type[ThresholdBlock] = ThresholdBlock
    if sleep_ms > 0:
        SleepyBlock.sleep_s = sleep_ms / 1000
        block_class = SleepyBlock
    settings = Settings(
        block_id=BLOCK_ID,
        instance_id=instance_id,
        redis_url_override=url,
        mgmt_port=free_port(),
        metrics_port=free_port(),
        ws_port=0,
        control_bind="127.0.0.1",
        claim_batch=claim_batch,
        drain_timeout_s=drain_timeout_s,
    )
    block = Block(block_class, settings)
    if profile is None:
        block.run()
        return
    if not profile_out:
        raise SystemExit("--profile needs --profile-out")
    _profiled(block.run, profile, profile_out)


def _profiled(fn: Callable[[], None], profiler: str, out: str) -> None:
    """Run fn under cProfile (pstats file) or pyinstrument (text report), main thread only."""
    if profiler == "cprofile":
        import cProfile

        prof = cProfile.Profile()
        prof.runcall(fn)
        prof.dump_stats(out)
        return
    from pyinstrument import Profiler  # type: ignore[import-not-found,unused-ignore]

    sampler = Profiler(interval=0.0005)
    sampler.start()
    try:
        fn()
    finally:
        sampler.stop()
    with open(out, "w") as f:
        f.write(sampler.output_text(unicode=False, color=False, show_all=False))


_MODES: dict[str, Callable[..., None]] = {
    "naive": run_naive,
    "batched": run_batched,
    "runtime": run_runtime,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.consumers")
    parser.add_argument("mode", choices=sorted(_MODES))
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--instance-id", required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--sleep-ms", type=float, default=0.0)
    parser.add_argument("--claim-batch", type=int, default=64, help="runtime: AIOS_CLAIM_BATCH")
    parser.add_argument("--drain-timeout-s", type=float, default=10.0, help="runtime")
    parser.add_argument("--profile", choices=["cprofile", "pyinstrument"])
    parser.add_argument("--profile-out")
    args = parser.parse_args(argv)
    _MODES[args.mode](
        args.redis_url,
        args.instance_id,
        batch=args.batch,
        sleep_ms=args.sleep_ms,
        claim_batch=args.claim_batch,
        drain_timeout_s=args.drain_timeout_s,
        profile=args.profile,
        profile_out=args.profile_out,
    )


if __name__ == "__main__":
    main()
