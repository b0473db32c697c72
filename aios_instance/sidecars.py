"""Sidecars: helper services next to a block, fed through their Redis list ``INPUTS``.

`BlockSideCars` (``context.side_cars``) is the block's side. The sidecar configuration maps a
name to its settings::

    {"saver": {"external": False},
     "audit": {"external": True, "external_redis_url": "audit-redis:6380"}}

An internal sidecar is reached at ``<name>-<block_id>-svc.sidecars.svc.cluster.local`` on port
6379; an external one at ``external_redis_url``, given as ``host``, ``host:port`` or a full
``redis://host:port/db`` URL. A push serializes the message with ``SerializeToString()`` and
RPUSHes it onto ``INPUTS``. Each sidecar gets one pooled client, created on first use with
short timeouts. A push that fails to connect resets that client and is retried once; if the
retry fails too, the push is counted in ``failures[name]`` and returns ``False``, and the
sidecar is *backed off*: pushes to it fail at once (counted as failures, and in ``skipped``)
for ``retry_after_s``, then one push probes it with a single attempt; each failed probe
doubles the interval up to ``max_retry_after_s``, a successful push ends the outage. So a
hung sidecar costs the block one timeout per interval, not two per push. The outage is
logged once when it starts (ERROR) and once when it ends (INFO). Pushes never raise for
transport problems, and an unknown name is logged and returns ``False`` as well. A retried
push can land twice if the first attempt timed out after Redis had applied it (delivery is
at-least-once).

`SidecarConsumer` is the sidecar's side: it pops packets from ``INPUTS``, decodes them as
`AIOSPacket` and hands each to a function. A malformed packet or a failing handler is logged
and counted; it never stops the loop. Packets are popped before they are handled, so a
sidecar that crashes mid-batch loses the rest of that batch (at-most-once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._urls import DEFAULT_PORT, as_redis_url, location, redis_url
from .errors import ConfigError, PacketDecodeError
from .keys import SIDECAR_INPUTS
from .packet import AIOSPacket, decode_packet

__all__ = [
    "INTERNAL_HOST",
    "BlockSideCars",
    "SidecarConsumer",
    "SupportsSerialize",
    "sidecar_url",
]

log = logging.getLogger(__name__)

INTERNAL_HOST = "{name}-{block_id}-svc.sidecars.svc.cluster.local"
"""Host name of an internal sidecar's Redis service."""

_RETRYABLE = (redis.ConnectionError, redis.TimeoutError)


class SupportsSerialize(Protocol):
    """Anything with protobuf's ``SerializeToString()``: AIOSPacket or any message."""

    def SerializeToString(self) -> bytes:
        """The wire bytes."""
        ...


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def sidecar_url(name: str, block_id: str, settings: Any, port: int = DEFAULT_PORT) -> str:
    """The Redis URL of sidecar ``name`` from its settings (ConfigError when invalid)."""
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise ConfigError(f"sidecar {name!r}: settings must be an object, got {settings!r}")
    if not _flag(settings.get("external", False)):
        return redis_url(INTERNAL_HOST.format(name=name, block_id=block_id), port)
    target = settings.get("external_redis_url")
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"sidecar {name!r} is external but has no external_redis_url")
    return as_redis_url(target, port)


@dataclass
class _Outage:
    """A failing sidecar: skipped until ``until`` (monotonic), then probed once."""

    until: float
    interval_s: float


class BlockSideCars:
    """Pushes protobuf messages to the ``INPUTS`` list of each configured sidecar."""

    def __init__(
        self,
        block_id: str,
        config: Mapping[str, Any] | None = None,
        *,
        port: int = DEFAULT_PORT,
        timeout_s: float = 2.0,
        retry_after_s: float = 1.0,
        max_retry_after_s: float = 30.0,
        on_failure: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config is not None and not isinstance(config, Mapping):
            raise ConfigError(f"sidecar config must map names to settings, got {config!r}")
        self.block_id = block_id
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.max_retry_after_s = max(max_retry_after_s, retry_after_s)
        self.on_failure = on_failure
        self._clock = clock  # times the backoff (a test passes a clock it moves by hand)
        self._outages: dict[str, _Outage] = {}
        self._urls = {
            str(name): sidecar_url(str(name), block_id, settings, port)
            for name, settings in (config or {}).items()
        }
        self._clients: dict[str, Redis] = {}
        self._lock = threading.Lock()
        self.pushed: dict[str, int] = dict.fromkeys(self._urls, 0)
        self.retries: dict[str, int] = dict.fromkeys(self._urls, 0)
        self.failures: dict[str, int] = dict.fromkeys(self._urls, 0)
        self.skipped: dict[str, int] = dict.fromkeys(self._urls, 0)  # failed fast, backed off

    @property
    def names(self) -> list[str]:
        """The configured sidecar names, in configuration order."""
        return list(self._urls)

    def url_for(self, name: str) -> str:
        """The Redis URL of sidecar ``name`` (KeyError when it is not configured)."""
        return self._urls[name]

    def push_to_sidecar(self, name: str, input_proto: SupportsSerialize) -> bool:
        """RPUSH the serialized message onto sidecar ``name``'s INPUTS; False on failure."""
        if name not in self._urls:
            configured = ", ".join(self._urls) or "none"
            log.error("no sidecar named %r (configured: %s); push dropped", name, configured)
            self._count(self.failures, name)
            self._notify(name)
            return False
        return self._push(name, input_proto.SerializeToString())

    def push_to_all_sidecars(self, input_proto: SupportsSerialize) -> dict[str, bool]:
        """Push to every sidecar (one failing never stops the others); name → success."""
        payload = input_proto.SerializeToString()
        return {name: self._push(name, payload) for name in self._urls}

    def close(self) -> None:
        """Close every client (a later push opens a new one)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __repr__(self) -> str:
        return f"BlockSideCars(block_id={self.block_id!r}, names={self.names!r})"

    # -- internals -------------------------------------------------------------------------
    def _push(self, name: str, payload: bytes) -> bool:
        attempts = self._attempts(name)
        if not attempts:
            self._count(self.skipped, name)
            self._count(self.failures, name)
            self._notify(name)
            return False
        error: Exception | None = None
        for attempt in range(attempts):
            client = self._client(name)
            try:
                client.rpush(SIDECAR_INPUTS, payload)
            except _RETRYABLE as exc:
                error = exc
                self._reset(name, client)
                if attempt + 1 < attempts:
                    self._count(self.retries, name)
                    log.debug("sidecar %r: push failed (%s); reconnecting once", name, exc)
                continue
            except redis.RedisError as exc:  # e.g. WRONGTYPE: a retry would not help
                error = exc
                break
            self._count(self.pushed, name)
            if name in self._outages:
                self._recovered(name)
            return True
        self._failed(name, error)
        return False

    def _attempts(self, name: str) -> int:
        """2 for a healthy sidecar (one retry), 1 to probe a failing one, 0 to skip it."""
        with self._lock:
            outage = self._outages.get(name)
            if outage is None:
                return 2
            now = self._clock()
            if now < outage.until:
                return 0
            outage.until = now + outage.interval_s  # this push probes; the others skip
            return 1

    def _failed(self, name: str, error: Exception | None) -> None:
        with self._lock:
            outage = self._outages.get(name)
            if outage is None:
                interval = self.retry_after_s
            else:
                interval = min(outage.interval_s * 2, self.max_retry_after_s)
            self._outages[name] = _Outage(self._clock() + interval, interval)
            self.failures[name] = self.failures.get(name, 0) + 1
        where = location(self._urls[name])
        if outage is None:
            log.error(
                "sidecar %r (%s): push failed: %s; pushes to it fail at once for %.3gs, then "
                "it is retried with backoff (up to %.3gs)",
                name,
                where,
                error,
                interval,
                self.max_retry_after_s,
            )
        else:
            log.debug(
                "sidecar %r (%s): still failing (%s); next try in %.3gs",
                name,
                where,
                error,
                interval,
            )
        self._notify(name)

    def _recovered(self, name: str) -> None:
        with self._lock:
            outage = self._outages.pop(name, None)
        if outage is not None:
            log.info("sidecar %r (%s): reachable again", name, location(self._urls[name]))

    def _client(self, name: str) -> Redis:
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self._clients[name] = Redis.from_url(
                    self._urls[name],
                    protocol=2,
                    decode_responses=False,
                    socket_connect_timeout=self.timeout_s,
                    socket_timeout=self.timeout_s,
                    retry=Retry(NoBackoff(), 0),
                )
            return client

    def _reset(self, name: str, client: Redis) -> None:
        with self._lock:
            if self._clients.get(name) is client:
                del self._clients[name]
        client.close()

    def _count(self, counters: dict[str, int], name: str) -> None:
        with self._lock:
            counters[name] = counters.get(name, 0) + 1

    def _notify(self, name: str) -> None:
        if self.on_failure is not None:
            try:
                self.on_failure(name)
            except Exception:
                log.exception("on_failure hook of BlockSideCars raised")


class SidecarConsumer:
    """The sidecar's loop: pop packets from ``INPUTS`` and call ``handler`` with each."""

    def __init__(
        self,
        redis: Redis,
        handler: Callable[[AIOSPacket], object],
        queue: str = SIDECAR_INPUTS,
        batch_size: int = 100,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.redis = redis
        self.handler = handler
        self.queue = queue
        self.batch_size = batch_size
        self.handled = 0
        self.malformed = 0
        self.errors = 0
        self.connection_errors = 0

    def run_once(self, timeout_s: float = 1.0) -> int:
        """Handle up to ``batch_size`` packets, waiting up to ``timeout_s`` for the first."""
        items = self._take(timeout_s)
        for raw in items:
            self._handle(raw)
        return len(items)

    def run(self, stop_event: threading.Event, poll_s: float = 1.0) -> int:
        """Handle packets until ``stop_event`` is set; returns how many were taken."""
        total = 0
        while not stop_event.is_set():
            try:
                total += self.run_once(poll_s)
            except _RETRYABLE as exc:
                self.connection_errors += 1
                log.warning("sidecar consumer: Redis unreachable (%s); retrying", exc)
                stop_event.wait(poll_s)
        return total

    def _take(self, timeout_s: float) -> list[bytes]:
        items: list[bytes] = []
        if timeout_s > 0:  # BLPOP's timeout 0 would mean "forever"
            first = self.redis.blpop([self.queue], timeout=max(timeout_s, 0.01))
            if first is None:
                return items
            items.append(_raw(first[1]))
        wanted = self.batch_size - len(items)
        if wanted > 0:
            more = self.redis.lpop(self.queue, wanted)  # a list (or None) when given a count
            if isinstance(more, list):
                items.extend(_raw(item) for item in more)
        return items

    def _handle(self, raw: bytes) -> None:
        try:
            packet = decode_packet(raw)
        except PacketDecodeError as exc:
            self.malformed += 1
            log.warning("sidecar consumer: dropped a malformed packet: %s", exc)
            return
        try:
            self.handler(packet)
        except Exception:
            self.errors += 1
            log.exception(
                "sidecar handler failed for session_id=%r seq_no=%d",
                packet.session_id,
                packet.seq_no,
            )
            return
        self.handled += 1


def _raw(item: bytes | str) -> bytes:
    return item.encode() if isinstance(item, str) else item
