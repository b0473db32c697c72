"""Start-up order: the instance Redis is checked before the block is constructed (a model
loaded for nothing is minutes lost on every crash-loop restart), and waited for with backoff
up to ``AIOS_STARTUP_TIMEOUT_S``, so a block started before its Redis serves once it appears.
The control API is already up meanwhile: ``/live`` answers, ``/ready`` says "starting".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from ..errors import TransportError
from ..transport._redis import guard

__all__ = ["wait_for_redis"]

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
