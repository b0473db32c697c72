"""Start-up: the allocated GPUs are exported, and the instance Redis is checked, before the
block is constructed (a model loaded for nothing is minutes lost on every crash-loop
restart); the Redis is waited for with backoff up to ``AIOS_STARTUP_TIMEOUT_S``, so a block
started before its Redis serves once it appears.
The control API is already up meanwhile: ``/live`` answers, ``/ready`` says "starting".
When the Redis stays away, or the block's constructor fails, the error says what to do and
where in the block's own code it failed.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

import redis

from .._urls import redact
from ..blockdata import BlockData
from ..context import Context
from ..errors import TransportError
from ..packet import decode_packet
from ..settings import Settings
from ..transport._redis import guard

__all__ = ["age_s", "allocation_of", "construct", "export_gpus", "unreachable", "wait_for_redis"]

log = logging.getLogger(__name__)

_FIRST_WAIT_S = 0.1
_MAX_WAIT_S = 2.0


def wait_for_redis(
    client: redis.Redis,
    timeout_s: float,
    where: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once ``client`` answers a PING; raise TransportError after ``timeout_s``
    (``0``: one try). One WARNING when it starts waiting, one INFO when it is reached."""
    deadline = clock() + timeout_s
    wait_s = _FIRST_WAIT_S
    waiting = False
    while True:
        try:
            guard(client.ping)
        except TransportError as exc:
            left = deadline - clock()
            if left <= 0:
                raise
            if not waiting:
                waiting = True
                log.warning("waiting up to %gs for the Redis at %s: %s", timeout_s, where, exc)
            sleep(min(wait_s, left))
            wait_s = min(wait_s * 2, _MAX_WAIT_S)
            continue
        if waiting:
            log.info("the instance Redis at %s answers", where)
        return


def unreachable(s: Settings, exc: Exception) -> str:
    """Why the instance Redis could not be reached: where its URL came from, what to do."""
    given = sorted(s.configured & {"AIOS_REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB"})
    source = f"from {', '.join(given)}" if given else "the default (no REDIS_* set)"
    return (
        f"cannot reach the instance Redis at {redact(s.redis_url)} ({source}): {exc}. "
        "Start redis-server there, or point AIOS_REDIS_URL (or REDIS_HOST/REDIS_PORT) at a "
        "running one; `aios-instance run` starts one for development when none is set."
    )


def construct(block_class: type[Any], context: Context) -> Any:
    """The user's constructor; when it fails, say where in the user's code (the traceback at
    DEBUG), then let the error go on (the CLI prints it as one line)."""
    try:
        return block_class(context)
    except Exception as exc:
        name = getattr(block_class, "__name__", "the block")
        where, kind = _user_frame(block_class, exc), type(exc).__name__
        log.error("%s(context) failed at %s: %s: %s", name, where, kind, exc)
        log.debug("traceback:\n%s", "".join(traceback.format_exception(exc)))
        raise


def _user_frame(block_class: type[Any], exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame in the block's own file (where a
    library raised, that too), else of the innermost frame outside this package."""
    frames = traceback.extract_tb(exc.__traceback__)
    try:
        home = os.path.abspath(inspect.getfile(block_class))
    except TypeError:
        home = ""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    mine = [f for f in frames if os.path.abspath(f.filename) == home] or [
        f for f in frames if not os.path.abspath(f.filename).startswith(package)
    ]
    if not mine:
        return "an unknown place"
    at, last = mine[-1], frames[-1]
    where = f"{at.filename}:{at.lineno} in {at.name}"
    return where if last is at else f"{where} (raised in {last.filename}:{last.lineno})"


def allocation_of(settings: Settings, data: BlockData) -> dict[str, Any] | None:
    """The allocation given (AIOS_ALLOCATION_INFO, else the block data's), None if none is."""
    if settings.allocation_info is not None:
        return settings.allocation_info
    given = data.document.get("allocationInfo")
    return given if isinstance(given, dict) else None


def export_gpus(allocation: dict[str, Any] | None) -> None:
    """Expose the allocated GPUs to CUDA before the user's class (and torch) is constructed.

    ``"gpus": []`` exports ``CUDA_VISIBLE_DEVICES=""`` (the allocator gave none: hide all);
    without an allocation, or one that says nothing about ``gpus``, the environment is kept.
    """
    gpus = None if allocation is None else allocation.get("gpus")
    if gpus is None:
        return
    ids = ",".join(_gpu_id(g) for g in (gpus if isinstance(gpus, (list, tuple)) else [gpus]))
    os.environ["CUDA_VISIBLE_DEVICES"] = ids
    log.info("allocated GPUs: CUDA_VISIBLE_DEVICES=%r", ids)


def _gpu_id(gpu: Any) -> str:
    return str(gpu.get("index", gpu.get("id", gpu)) if isinstance(gpu, dict) else gpu)


def age_s(raw: bytes | None) -> float:
    """How long ago a waiting packet was produced (0 when unknown)."""
    if raw is None:
        return 0.0
    try:
        ts = decode_packet(raw).ts
    except Exception:
        return 0.0
    return max(time.time() - ts, 0.0) if ts > 0 else 0.0
