"""``POST /infer``: a block as a web backend, on the control API's server.

The body is a job (``request.py``); the block's pipeline runs in this instance (no Redis
round trip, see ``runtime/invoke.py``) on one thread (`runner.py`), never on the event loop, and the
outputs come back as JSON. ``?stream=true`` answers Server-Sent Events instead: each
``context.write_ws`` message for the job's session as a ``data:`` line, then a final event
with the outputs, then the stream ends.

Bounds: ``AIOS_INFER_MAX_CONCURRENCY`` requests running or waiting (more: 429 with
``Retry-After``), ``MAX_BODY_BYTES`` per body and ``MAX_BODIES_BYTES`` for all bodies in
flight (413/429), ``AIOS_INFER_TIMEOUT_S`` per request (504; the call runs on, and the
watchdog ends the instance if it never returns). Who may call it: ``AccessPolicy.for_ingest``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .. import _json
from ..control.access import AccessPolicy
from ..packet import AIOSPacket
from .base import Invoker, Reply
from .metrics import IngestMetrics
from .request import BadRequestError, form_fields, packet_from, parse_json
from .runner import Runner
from .streams import StreamHub, Subscriber

__all__ = ["MAX_BODIES_BYTES", "MAX_BODY_BYTES", "InferRoutes", "status_of"]

MAX_BODY_BYTES = 8 << 20  # one request body (files included)
MAX_BODIES_BYTES = 64 << 20  # all bodies being read or run at once
_JSON = "application/json"
_STARTING = "starting: the block is being constructed"
_OVERFLOW = "the stream's send queue filled: the client reads too slowly"


class RefusedError(Exception):
    """A request answered with an error before it ran."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def status_of(reply: Reply) -> int:
    """The HTTP status of a job's reply."""
    if not reply.failed:
        return 202 if (reply.queued or (reply.held and not reply.outputs)) else 200
    if reply.outcome in ("bad_input", "routing_error", "routing_loop"):
        return 400
    return 500 if reply.raised else 422


def reply_body(reply: Reply, packet: AIOSPacket) -> bytes:
    """``{"success", "session_id", "seq_no", "outputs": [...], "held"?, "queued"?}`` (the
    outputs' JSON spliced in as it is), or ``{"success": false, "message", "outcome"}``."""
    head = f'"session_id":{_json.dumps(packet.session_id)},"seq_no":{packet.seq_no}'
    if reply.failed:
        tail = f'"message":{_json.dumps(reply.reason)},"outcome":"{reply.outcome}"'
        return f'{{"success":false,{head},{tail}}}'.encode()
    extra = (f',"held":{reply.held}' if reply.held else "") + (
        ',"queued":true' if reply.queued else ""
    )
    outputs = ",".join(reply.outputs)
    return f'{{"success":true,{head},"outputs":[{outputs}]{extra}}}'.encode()


class InferRoutes:
    """The ``/infer`` route; ``invoker()`` is None until the block is constructed."""

    def __init__(
        self,
        invoker: Callable[[], Invoker | None],
        hub: StreamHub,
        metrics: IngestMetrics,
        policy: AccessPolicy,
        *,
        timeout_s: float,
        max_concurrency: int,
    ) -> None:
        self._invoker, self.hub, self.metrics, self.policy = invoker, hub, metrics, policy
        self.timeout_s = timeout_s
        self.runner = Runner("aios-ingest", max_concurrency)
        # Read from the runner at each scrape: a job past its timeout still counts while it runs.
        metrics.track("http", lambda: self.runner.pending)
        self._body_bytes = 0  # bodies in flight (touched on the event loop only)

    def routes(self) -> list[Route]:
        return [Route("/infer", self.infer, methods=["POST"])]

    def close(self) -> None:
        self.runner.close()

    async def infer(self, request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            response = await self._infer(request)
        except RefusedError as exc:
            body = _json.dumps_bytes({"success": False, "message": exc.message})
            response = Response(body, exc.status, exc.headers, _JSON)
        if not isinstance(response, StreamingResponse):
            self.metrics.request("http", response.status_code, time.perf_counter() - t0)
        return response

    async def _infer(self, request: Request) -> Response:
        self._authorize(request)
        invoker = self._invoker()
        if invoker is None:
            raise RefusedError(503, _STARTING, {"Retry-After": "1"})
        size = _declared_size(request)
        if self._body_bytes + size > MAX_BODIES_BYTES:
            raise RefusedError(429, "busy: too many request bytes in flight", {"Retry-After": "1"})
        self._body_bytes += size
        try:
            packet = await self._packet(request)
            if request.query_params.get("stream", "").lower() in ("1", "true", "yes"):
                return self._stream(invoker, packet)
            reply = await self._run(invoker, packet)
        finally:
            self._body_bytes -= size
        return Response(reply_body(reply, packet), status_of(reply), media_type=_JSON)

    def _authorize(self, request: Request) -> None:
        refusal = self.policy.refusal(
            authorization=request.headers.get("authorization", ""),
            peer=request.client.host if request.client else None,
            header_names=request.headers.keys(),
        )
        if refusal is not None:
            raise RefusedError(refusal.status, refusal.message, refusal.headers or None)

    async def _packet(self, request: Request) -> AIOSPacket:
        kind = request.headers.get("content-type", "")
        try:
            if kind.startswith("multipart/form-data"):
                async with request.form(
                    max_files=64, max_fields=16, max_part_size=MAX_BODY_BYTES
                ) as form:
                    fields, files = form_fields(list(form.multi_items()))
                    return packet_from(fields, files)
            return packet_from(parse_json(await _read(request)))
        except BadRequestError as exc:
            raise RefusedError(400, str(exc)) from None

    def _submit(self, invoker: Invoker, packet: AIOSPacket) -> asyncio.Future[Reply]:
        call = self.runner.submit(lambda: invoker.invoke(packet, ingress="http"))
        if call is None:
            raise RefusedError(
                429,
                f"busy: {self.runner.limit} jobs are running or waiting "
                "(AIOS_INFER_MAX_CONCURRENCY)",
                {"Retry-After": "1"},
            )
        return call

    async def _run(self, invoker: Invoker, packet: AIOSPacket) -> Reply:
        call = self._submit(invoker, packet)
        try:
            return await asyncio.wait_for(asyncio.shield(call), self.timeout_s)
        except asyncio.TimeoutError:
            call.cancel()  # not started yet: it never runs; running: it runs on, unanswered
            await self._record_timeout(invoker, packet)
            raise RefusedError(
                504, f"the block did not answer within {self.timeout_s:g}s (AIOS_INFER_TIMEOUT_S)"
            ) from None

    async def _record_timeout(self, invoker: Invoker, packet: AIOSPacket) -> None:
        # A Redis write: off the event loop.
        await asyncio.to_thread(invoker.timed_out, packet, ingress="http", after_s=self.timeout_s)

    def _stream(self, invoker: Invoker, packet: AIOSPacket) -> StreamingResponse:
        subscriber = Subscriber(asyncio.get_running_loop())
        self.hub.subscribe(packet.session_id, subscriber)
        try:
            call = self._submit(invoker, packet)
        except BaseException:
            self.hub.unsubscribe(subscriber)
            raise
        events = self._events(invoker, packet, subscriber, call, time.perf_counter())
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    async def _events(
        self,
        invoker: Invoker,
        packet: AIOSPacket,
        subscriber: Subscriber,
        call: asyncio.Future[Reply],
        t0: float,
    ) -> AsyncIterator[bytes]:
        """Deltas as they come, then the final event; ``Subscriber`` bounds what waits."""
        status: int | str = 200
        try:
            async for chunk in _deltas(subscriber, call, self.timeout_s):
                yield chunk
            if subscriber.overflowed:
                status = "overflow"
                yield _event({"error": _OVERFLOW, "done": True})
            elif not call.done():
                call.cancel()
                status = 504
                await self._record_timeout(invoker, packet)
                yield _event({"error": f"no answer within {self.timeout_s:g}s", "done": True})
            else:
                reply = call.result()
                status = status_of(reply)
                yield b"data: " + reply_body(reply, packet)[:-1] + b',"done":true}\n\n'
        finally:
            self.hub.unsubscribe(subscriber)
            subscriber.close()
            self.metrics.request("http", status, time.perf_counter() - t0)


async def _deltas(
    subscriber: Subscriber, call: asyncio.Future[Reply], timeout_s: float
) -> AsyncIterator[bytes]:
    """SSE ``data:`` lines for what the block writes, until the job ends (then what it
    wrote last), the deadline passes, or the queue overflows."""
    deadline = time.monotonic() + timeout_s
    while not call.done():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        getter: asyncio.Future[Any] = asyncio.ensure_future(subscriber.get())
        waiting: set[asyncio.Future[Any]] = {getter, call}
        await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            continue
        items = getter.result()
        if not items:  # overflowed (or closed)
            return
        yield b"".join(b"data: " + item + b"\n\n" for item in items)
    if subscriber.pending():
        items = await subscriber.get()
        yield b"".join(b"data: " + item + b"\n\n" for item in items)


def _event(value: Any) -> bytes:
    return b"data: " + _json.dumps_bytes(value) + b"\n\n"


def _declared_size(request: Request) -> int:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) > MAX_BODY_BYTES:
            raise RefusedError(413, f"request body over {MAX_BODY_BYTES} bytes")
        return int(declared)
    return MAX_BODY_BYTES  # unknown (chunked): count the most it may be


async def _read(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RefusedError(413, f"request body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
