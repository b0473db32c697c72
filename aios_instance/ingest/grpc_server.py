"""The gRPC ingest: the ``InferenceProxy`` service other blocks' ``port: 0`` outputs (and the
platform's proxy) call, served inside the instance on ``AIOS_GRPC_PORT``.

``/InferenceProxy/infer`` takes ``InferenceMessage{bytes rpc_data = 1}`` (a serialized
``AIOSPacket``) with metadata ``x-service-name: <block id>`` and answers
``InferenceRespose{bool message = 1}``. The packet is pushed to the block's own input list,
and ``message=true`` is answered only once Redis has acknowledged the push: a ``true`` is
never lost. The worker then processes it as any queued packet (at-least-once, dead letters,
routing).

Status codes (docs/grpc.md has the table): OK with ``message=true`` (the packet is in
``{BLOCK_ID}_inputs``); INVALID_ARGUMENT (``rpc_data`` empty or not an ``AIOSPacket``:
dead-lettered ``bad_input``, stage ``ingest``; or no ``x-service-name``); NOT_FOUND
(``x-service-name`` names another block); UNAUTHENTICATED / PERMISSION_DENIED (the access
rule, ``AccessPolicy.for_ingest``); UNAVAILABLE (Redis did not take the push: retry);
RESOURCE_EXHAUSTED (``MAX_CONCURRENT_RPCS`` calls in progress, or a message over
``MAX_MESSAGE_BYTES``).

Concurrent calls share their Redis round trips (``Enqueuer``): one caller pushes what all
callers waiting have, in one LPUSH, and hands the next round to one of those who arrived
meanwhile. Threads, not ``grpc.aio``: each call blocks on its push, and the thread pool's
bound is the concurrency bound (docs/grpc.md has the measurement).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from typing import Any

import grpc

from .. import keys
from .._proto import inference_proxy_pb2 as pb
from ..control.access import AccessPolicy
from ..deadletters import dead_letter_record
from ..errors import ConfigError, PacketDecodeError, TransportError
from ..packet import decode_packet
from .metrics import IngestMetrics

__all__ = ["MAX_CONCURRENT_RPCS", "MAX_MESSAGE_BYTES", "Enqueuer", "GrpcIngest", "peer_host"]

log = logging.getLogger(__name__)

METHOD = "/InferenceProxy/infer"
MAX_MESSAGE_BYTES = 16 << 20  # one InferenceMessage (grpc's default is 4 MiB)
MAX_CONCURRENT_RPCS = 256  # calls in progress; more: RESOURCE_EXHAUSTED
_THREADS = 32  # threads serving calls (each blocks on its push)
_PUSH_TIMEOUT_S = 30.0  # a call waiting for its push this long is answered UNAVAILABLE
_LOG_EVERY_S = 10.0


class _Push:
    __slots__ = ("done", "error", "lead", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.done = threading.Event()
        self.error: Exception | None = None
        self.lead = False  # handed the next round: push what is pending


class Enqueuer:
    """LPUSHes packets to one list for many threads, sharing round trips (group commit)."""

    def __init__(self, redis: Any, key: str) -> None:
        self.redis, self.key = redis, key
        self._lock = threading.Lock()
        self._pending: list[_Push] = []
        self._flushing = False

    def push(self, raw: bytes, timeout_s: float = _PUSH_TIMEOUT_S) -> None:
        """Returns once Redis took ``raw``; raises TransportError when it did not."""
        item = _Push(raw)
        with self._lock:
            self._pending.append(item)
            lead = not self._flushing
            self._flushing = True
        if not lead:
            if not item.done.wait(timeout_s):
                raise TransportError(f"the push did not finish within {timeout_s:g}s")
            if not item.lead:
                if item.error is not None:
                    raise item.error
                return
        self._round()  # item is the first pending: this round pushes it
        if item.error is not None:
            raise item.error

    def _round(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        error: Exception | None = None
        try:
            self.redis.lpush(self.key, *[p.raw for p in batch])
        except Exception as exc:  # redis-py's errors, a closed pool: this round failed
            error = TransportError(f"Redis did not take the packets: {exc}")
        with self._lock:
            following = self._pending[0] if self._pending else None
            if following is None:
                self._flushing = False
        for p in batch:
            p.error = error
            p.done.set()
        if following is not None:  # who came meanwhile: one of them pushes the next round
            following.lead = True
            following.done.set()


def peer_host(peer: str) -> str | None:
    """The host of a gRPC peer string (``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or None
    if kind == "ipv6":
        host = rest.rpartition(":")[0]
        return host.strip("[]") or None
    return None  # unix sockets and the like: not known to be local


class GrpcIngest:
    """The ``InferenceProxy`` server of one block instance (threads)."""

    def __init__(
        self,
        *,
        redis: Any,
        block_id: str,
        instance_id: str,
        metrics: IngestMetrics,
        policy: AccessPolicy,
        host: str,
        port: int,
    ) -> None:
        self.block_id, self.instance_id = block_id, instance_id
        self.metrics, self.policy = metrics, policy
        self.redis = redis
        self.host, self.port = host, port
        self._enqueuer = Enqueuer(redis, keys.inputs(block_id))
        self._dead = keys.dead_letters(block_id)
        self._logged = -_LOG_EVERY_S
        self._server: grpc.Server | None = None

    def start(self) -> GrpcIngest:
        handler = grpc.unary_unary_rpc_method_handler(
            self._infer,
            request_deserializer=pb.InferenceMessage.FromString,
            response_serializer=pb.InferenceRespose.SerializeToString,
        )
        service = grpc.method_handlers_generic_handler("InferenceProxy", {"infer": handler})
        server = grpc.server(
            futures.ThreadPoolExecutor(_THREADS, thread_name_prefix="aios-grpc"),
            handlers=[service],
            maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),  # a port in use is an error, not shared
            ],
        )
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise ConfigError(
                f"cannot bind the gRPC ingest to {address}. Set AIOS_GRPC_PORT to a free port "
                "(or 0 to turn it off)"
            )
        self.port = bound
        server.start()
        self._server = server
        log.info("gRPC InferenceProxy ingest on %s:%d", self.host, bound)
        return self

    def close(self, grace_s: float = 2.0) -> None:
        """Stop taking calls; those in progress get ``grace_s`` to finish."""
        if self._server is not None:
            self._server.stop(grace_s).wait(grace_s + 1.0)
            self._server = None

    # -- one call -----------------------------------------------------------------------------
    def _infer(self, request: pb.InferenceMessage, context: grpc.ServicerContext) -> Any:
        t0 = time.perf_counter()
        self.metrics.started("grpc")
        status = grpc.StatusCode.UNKNOWN
        try:
            status, details = self._handle(request, context)
            if status is not grpc.StatusCode.OK:
                context.set_code(status)
                context.set_details(details)
            return pb.InferenceRespose(message=status is grpc.StatusCode.OK)
        finally:
            self.metrics.finished("grpc")
            self.metrics.request("grpc", status.name, time.perf_counter() - t0)

    def _handle(
        self, request: pb.InferenceMessage, context: grpc.ServicerContext
    ) -> tuple[grpc.StatusCode, str]:
        refusal = self._refusal(request, context)
        if refusal is not None:
            return refusal
        try:
            self._enqueuer.push(request.rpc_data)
        except TransportError as exc:
            return grpc.StatusCode.UNAVAILABLE, exc.message
        return grpc.StatusCode.OK, ""

    def _refusal(
        self, request: pb.InferenceMessage, context: grpc.ServicerContext
    ) -> tuple[grpc.StatusCode, str] | None:
        """Why the call is refused (status and details), or None to push it."""
        metadata = {k.lower(): v for k, v in context.invocation_metadata()}
        refusal = self.policy.refusal(
            authorization=str(metadata.get("authorization", "")),
            peer=peer_host(context.peer()),
            header_names=metadata.keys(),
        )
        if refusal is not None:
            unauthenticated = refusal.reason == "unauthenticated"
            status = grpc.StatusCode.UNAUTHENTICATED
            return (status if unauthenticated else grpc.StatusCode.PERMISSION_DENIED), (
                refusal.message
            )
        service = metadata.get("x-service-name")
        if not service:
            return grpc.StatusCode.INVALID_ARGUMENT, (
                f"x-service-name metadata (the target block id, {self.block_id!r}) is required"
            )
        if service != self.block_id:
            return grpc.StatusCode.NOT_FOUND, (
                f"this is block {self.block_id!r}: no block {service!r} here"
            )
        return self._malformed(request.rpc_data)

    def _malformed(self, raw: bytes) -> tuple[grpc.StatusCode, str] | None:
        """INVALID_ARGUMENT for bytes that are not a packet (dead-lettered), else None."""
        try:
            if not raw:
                raise PacketDecodeError("rpc_data is empty: it must hold a serialized AIOSPacket")
            decode_packet(raw)
        except PacketDecodeError as exc:
            self._dead_letter(raw, exc.message)
            return grpc.StatusCode.INVALID_ARGUMENT, exc.message
        return None

    def _dead_letter(self, raw: bytes, reason: str) -> None:
        record = dead_letter_record(
            outcome="bad_input",
            stage="ingest",
            reason=reason,
            packets=[raw] if raw else [],
            block_id=self.block_id,
            instance_id=self.instance_id,
        )
        try:
            self.redis.lpush(self._dead, record)
        except Exception as exc:  # the caller still hears why; the log says the record is lost
            log.error("could not dead-letter a malformed gRPC packet (%s): %s", reason, exc)
        now = time.monotonic()
        if now - self._logged >= _LOG_EVERY_S:
            self._logged = now
            log.warning("gRPC infer refused a malformed packet (dead-lettered): %s", reason)
