"""Giving an instance up, when the watchdog finds user code stuck.

A Python thread cannot be killed, so an instance whose job hangs cannot get its worker back.
What it can do, from the watchdog's thread: answer ``/live`` with 503 (an orchestrator
restarts it), fence the worker off the source (``watchdog.Gate``), dead-letter the stuck
packet with reason ``timeout`` at once (not after ``max_deliveries`` crash loops, each
stalling an instance for the whole timeout), hand every other packet it holds back to the
input without counting a delivery, and exit with ``EXIT_JOB_TIMEOUT``. A stop past its
deadline (``AIOS_DRAIN_TIMEOUT_S``) ends the same way, without a dead letter, with exit code 0.
An embedded runtime (``Block.start()``) does not exit the process: it stays given up, ``/live``
503, until ``stop()``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Protocol

from ..errors import TransportError
from ..settings import Settings
from ..transport.base import Commit
from ..transport.pool import SinkPool
from ..transport.redis import RedisSource
from .hooks import Batch
from .instruments import RuntimeMetrics
from .pipeline import Pipeline
from .watchdog import EXIT_JOB_TIMEOUT, Stuck
from .worker import Worker

__all__ = ["give_up"]

log = logging.getLogger(__name__)

_FENCE_TIMEOUT_S = 5.0  # how long a transport call of the worker may keep the source


class Stoppable(Protocol):
    """What giving up needs of the runtime."""

    settings: Settings
    pipeline: Pipeline
    worker: Worker
    source: RedisSource
    sinks: SinkPool
    runtime_metrics: RuntimeMetrics
    live_problem: str
    gave_up: bool
    exit_on_give_up: bool
    handed_back: threading.Event


def give_up(rt: Stoppable, stuck: Stuck) -> bool:
    """Give the instance up over ``stuck``; False when the stuck call returned meanwhile."""
    why = _why(rt.settings, stuck)
    rt.live_problem = why  # /live answers 503 from now on
    running = rt.pipeline.running
    fence = rt.worker.gate.close(
        _FENCE_TIMEOUT_S, lambda: not stuck.timed_out or running.call is stuck.call
    )
    if fence == "returned":
        rt.live_problem = ""
        log.warning("%s returned after all, %.1fs after it began", stuck.phase, stuck.running_s)
        return False
    exits = "exiting" if rt.exit_on_give_up else "stopping"
    log.error("%s; handing back the packets held and %s", why, exits)
    if stuck.timed_out:
        rt.runtime_metrics.job_timed_out(stuck.phase)
    try:
        if fence == "fenced":
            _hand_back(rt, stuck, why)
        else:  # the worker's Redis call hangs too: the lease hands its packets back
            log.error("the worker's Redis call did not end within %gs either", _FENCE_TIMEOUT_S)
    except Exception:  # whatever went wrong, the instance still ends (the lease hands back)
        log.exception("handing back failed")
    finally:
        rt.gave_up = True
        if rt.exit_on_give_up:
            _exit(EXIT_JOB_TIMEOUT if stuck.timed_out else 0)
        rt.handed_back.set()  # an embedded runtime's serve() waits for this
    return True


def _why(s: Settings, stuck: Stuck) -> str:
    if stuck.timed_out:
        return (
            f"{stuck.phase} did not return within AIOS_JOB_TIMEOUT_S={s.job_timeout_s:g}s "
            f"(running {stuck.running_s:.1f}s)"
        )
    doing = f" ({stuck.phase} running {stuck.running_s:.1f}s)" if stuck.call else ""
    return f"the stop did not finish within AIOS_DRAIN_TIMEOUT_S={s.drain_timeout_s:g}s{doing}"


def _hand_back(rt: Stoppable, stuck: Stuck, why: str) -> None:
    """With the worker fenced off: the stuck packets dead-lettered (a timeout), the rest back
    to the input, the lease released, the endpoints' connections closed."""
    source = rt.source
    source.stop_claiming()
    raws = list(stuck.raws)
    try:
        if stuck.timed_out and raws:
            record = rt.worker.records.record("timeout", stuck.phase, why, raws)
            source.commit(Commit(acks=raws, records=[record.data]))
            rt.worker.hooks.dead_lettered(Batch(0), "timeout", len(raws), why)
        elif raws:
            source.release(raws)  # back first, in its place
    except TransportError as exc:  # the lease hands it back (a timed-out one counted again)
        log.error("could not settle the stuck packet: %s", exc)
    try:  # dead letters of rejected pushes, and acknowledgements, waiting to be committed
        rt.worker.outbox.resend(source.commit)
    except TransportError as exc:
        log.error("could not send the commits the input Redis had refused: %s", exc)
    source.close()
    rt.worker.outbox.close()
    rt.sinks.close()


def _exit(code: int) -> None:
    """End the process now: the worker's thread is stuck in user code, so no orderly return
    is possible; what is held has been handed back."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
