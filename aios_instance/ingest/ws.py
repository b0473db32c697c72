"""WebSocket streaming (``AIOS_WS_PORT``, default 18002).

A client sends JSON messages: a job ``{"session_id", "seq_no"?, "data", "ts"?}`` (``data`` a
string or an object), or ``{"session_id", "connect": true}`` to receive a session's messages
without sending a job. The block streams partial results with ``context.write_ws(session_id,
message)`` (by convention ``{"delta": "..."}``, then ``{"delta": "[END_OF_STREAM]"}``), and
each job's outputs follow as ``{"session_id", "seq_no", "output"}`` (``{"held": true}`` or
``{"queued": true}`` when there is none yet; ``{"error": "..."}`` when it failed). A
connection keeps receiving the sessions it sent or connected to.

Jobs run on the ``/infer`` runner (one ``AIOS_INFER_MAX_CONCURRENCY`` for both), never on the
event loop, one at a time per connection, with ``on_data(entry, is_ws=True)``. Everything a
connection is sent goes through its ``Subscriber``: in order, and bounded. A client that
reads too slowly fills it, and its connection alone is closed (1013, "try again later");
other connections and the block carry on. Who may connect: ``AccessPolicy.for_ingest``
(``Authorization: Bearer <token>`` or, for browsers, ``?token=<token>``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .. import _json
from ..control.access import AccessPolicy
from ..errors import ConfigError
from .base import Invoker, Reply
from .metrics import IngestMetrics
from .request import BadRequestError, packet_from
from .runner import Runner
from .streams import StreamHub, Subscriber

__all__ = ["MAX_MESSAGE_BYTES", "WsServer"]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20  # one client message
_TRY_AGAIN_LATER = 1013


class WsServer:
    """The WebSocket server, on its own thread and event loop."""

    def __init__(
        self,
        invoker: Callable[[], Invoker | None],
        hub: StreamHub,
        metrics: IngestMetrics,
        policy: AccessPolicy,
        runner: Runner,
        *,
        host: str,
        port: int,
        max_connections: int,
        timeout_s: float,
    ) -> None:
        self._invoker, self.hub, self.metrics, self.policy = invoker, hub, metrics, policy
        self.runner, self.timeout_s, self.max_connections = runner, timeout_s, max_connections
        self.host = host
        self._sock = _bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aios-ws", daemon=True)
        self.connections = 0

    def start(self, timeout_s: float = 10.0) -> WsServer:
        self._thread.start()
        if not self._started.wait(timeout_s) or self._server is None:
            raise ConfigError(f"the WebSocket server did not start on {self.host}:{self.port}")
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Close every connection (1001) and stop the loop."""
        if self._server is not None and self._loop.is_running():
            server = self._server

            async def stop() -> None:
                server.close()
                await server.wait_closed()

            future = asyncio.run_coroutine_threadsafe(stop(), self._loop)
            try:
                future.result(timeout_s)
            except Exception:  # pragma: no cover - best effort at shutdown
                log.warning("the WebSocket server did not close within %gs", timeout_s)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        self._sock.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(self._serve())
        except BaseException:
            log.exception("the WebSocket server could not start")
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    async def _serve(self) -> Server:
        server: Server = await serve(
            self._handle,
            sock=self._sock,
            process_request=self._admit,
            max_size=MAX_MESSAGE_BYTES,
            max_queue=16,
            compression=None,
            server_header=None,
            open_timeout=10,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
        )
        return server

    # -- admission --------------------------------------------------------------------------
    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.connections >= self.max_connections:
            return connection.respond(503, "too many WebSocket connections\n")
        authorization = request.headers.get("Authorization", "")
        token = parse_qs(urlsplit(request.path).query).get("token")
        if not authorization and token:
            authorization = f"Bearer {token[0]}"  # browsers cannot set headers on a WebSocket
        peer = connection.remote_address[0] if connection.remote_address else None
        refusal = self.policy.refusal(
            authorization=authorization, peer=peer, header_names=request.headers.keys()
        )
        if refusal is not None:
            return connection.respond(refusal.status, refusal.message + "\n")
        if self._invoker() is None:
            return connection.respond(503, "starting: the block is being constructed\n")
        return None

    # -- a connection -------------------------------------------------------------------------
    async def _handle(self, connection: ServerConnection) -> None:
        self.connections += 1
        self.metrics.set_connections(self.connections)
        subscriber = Subscriber(asyncio.get_running_loop())
        sender = asyncio.ensure_future(_send_all(connection, subscriber))
        try:
            async for message in connection:
                if sender.done():
                    break
                await self._on_message(subscriber, message)
        except ConnectionClosed:
            pass
        finally:
            self.hub.unsubscribe(subscriber)
            subscriber.close()
            await asyncio.wait({sender}, timeout=1.0)
            sender.cancel()
            self.connections -= 1
            self.metrics.set_connections(self.connections)

    async def _on_message(self, subscriber: Subscriber, message: str | bytes) -> None:
        t0 = time.perf_counter()
        try:
            fields = _json.loads(message)
        except ValueError as exc:
            return self._answer(subscriber, 400, t0, {"error": f"not valid JSON: {exc}"})
        if not isinstance(fields, dict):
            error = {"error": f"a message is a JSON object, not {_json.type_name(fields)}"}
            return self._answer(subscriber, 400, t0, error)
        session_id = fields.get("session_id")
        if fields.get("connect") is True:
            return self._connect(subscriber, session_id, t0)
        try:
            packet = packet_from(fields)
        except BadRequestError as exc:
            return self._answer(subscriber, 400, t0, {"error": str(exc), "session_id": session_id})
        ids: dict[str, Any] = {"session_id": packet.session_id, "seq_no": packet.seq_no}
        if not self.hub.subscribe(packet.session_id, subscriber):
            return self._answer(subscriber, 429, t0, {"error": _TOO_MANY_SESSIONS, **ids})
        invoker = self._invoker()
        assert invoker is not None  # admitted only once the block was constructed
        call = self.runner.submit(lambda: invoker.invoke(packet, ingress="ws", is_ws=True))
        if call is None:
            busy = {"error": "busy: too many jobs running or waiting; retry", **ids}
            return self._answer(subscriber, 429, t0, busy)
        try:
            reply = await asyncio.wait_for(asyncio.shield(call), self.timeout_s)
        except asyncio.TimeoutError:
            call.cancel()
            await asyncio.to_thread(invoker.timed_out, packet, ingress="ws", after_s=self.timeout_s)
            error = {"error": f"no answer within {self.timeout_s:g}s", **ids}
            return self._answer(subscriber, 504, t0, error)
        for item in _messages(reply, ids):
            subscriber.offer(_json.dumps_bytes(item))
        self.metrics.request("ws", 200 if not reply.failed else 500, time.perf_counter() - t0)
        return None

    def _connect(self, subscriber: Subscriber, session_id: Any, t0: float) -> None:
        if not isinstance(session_id, str) or not session_id:
            return self._answer(subscriber, 400, t0, {"error": "'session_id' must be a string"})
        if not self.hub.subscribe(session_id, subscriber):
            return self._answer(subscriber, 429, t0, {"error": _TOO_MANY_SESSIONS})
        return self._answer(subscriber, 200, t0, {"session_id": session_id, "connected": True})

    def _answer(self, subscriber: Subscriber, code: int, t0: float, message: Any) -> None:
        subscriber.offer(_json.dumps_bytes(message))
        self.metrics.request("ws", code, time.perf_counter() - t0)


_TOO_MANY_SESSIONS = "this connection streams too many sessions already"


def _messages(reply: Reply, ids: dict[str, Any]) -> list[dict[str, Any]]:
    """What a job's reply sends: each output, or held/queued, or the error."""
    if reply.failed:
        error: dict[str, Any] = {"error": reply.reason, "outcome": reply.outcome}
        return [{**error, **ids}]
    out: list[dict[str, Any]] = [{**ids, "output": _json.loads(o)} for o in reply.outputs]
    if reply.queued:
        out.append({**ids, "queued": True})
    elif reply.held and not out:
        out.append({**ids, "held": True})
    return out


async def _send_all(connection: ServerConnection, subscriber: Subscriber) -> None:
    """Send what the subscriber queues, in order; close the connection when it overflows."""
    try:
        while items := await subscriber.get():
            for item in items:
                await connection.send(item.decode())
        if subscriber.overflowed:
            await connection.close(_TRY_AGAIN_LATER, "send queue full: the client reads too slowly")
    except ConnectionClosed:
        pass


def _bind(host: str, port: int) -> socket.socket:
    sock: socket.socket | None = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise ConfigError(
            f"cannot bind the WebSocket server to {host}:{port}: {exc}. Set AIOS_WS_PORT to a "
            "free port (or 0 to turn it off)"
        ) from None
    return sock
