"""The HTTP control API: health, liveness, readiness, parameters, management and metrics.

``start_control(runtime)`` serves a small Starlette app under uvicorn on its own thread (bound
to ``settings.control_bind:settings.mgmt_port``; ``MGMT_PORT=0`` disables it) and starts the
``PARAMETER_UPDATES`` listener (``params.py``). It returns the closers the runtime calls at
shutdown. User callbacks (``health``, ``on_update``, ``management``) run in worker threads, so
a slow callback never stalls the event loop or the other probes; ``health()`` is also bounded
by ``HEALTH_TIMEOUT_S`` and concurrent probes share one in-flight call.

Every error is ``{"success": false, "message": ...}``: bad client input is a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import _json
from .errors import ConfigError
from .params import ParameterListener
from .transport.redis import connect

if TYPE_CHECKING:
    import redis

    from .block import Runtime

__all__ = ["HEALTH_TIMEOUT_S", "MAX_BODY_BYTES", "ControlServer", "build_app", "start_control"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # larger request bodies get 413
HEALTH_TIMEOUT_S = 5.0  # health() slower than this answers 503 (the call keeps running)
_JSON = "application/json"
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


class ClientError(Exception):
    """A request the API refuses; becomes ``{"success": false, "message"}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _respond(
    status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    try:
        body = _json.dumps_bytes(payload)
    except (TypeError, ValueError) as exc:
        status, body = 500, _error_body(f"the block returned a value that is not JSON: {exc}")
    return Response(body, status_code=status, media_type=_JSON, headers=headers)


def _error_body(message: str) -> bytes:
    return _json.dumps_bytes({"success": False, "message": message})


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "number")


async def _read_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (at most MAX_BODY_BYTES), else a ClientError."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ClientError(413, f"request body over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ClientError(413, f"request body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        value = _json.loads(b"".join(chunks))
    except ValueError as exc:
        raise ClientError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ClientError(400, f"body must be a JSON object, got {_json_type(value)}")
    return value


class _Handlers:
    """The endpoints; one instance per app, holding the runtime and the readiness client."""

    def __init__(self, runtime: Runtime, ready_client: redis.Redis | None) -> None:
        self.runtime = runtime
        self.ready_client = ready_client
        self.token = runtime.settings.control_token
        self._health_call: asyncio.Future[tuple[int, dict[str, Any]]] | None = None

    def _authorize(self, request: Request) -> None:
        if not self.token:
            return
        scheme, _, supplied = request.headers.get("authorization", "").partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            supplied.strip().encode("latin-1"), self.token.encode()
        )
        if not ok:
            raise ClientError(
                401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
            )

    def _call_health(self) -> tuple[int, dict[str, Any]]:
        """Runs in a worker thread: health() and the check that its value is JSON."""
        try:
            value = self.runtime.health()
        except Exception as exc:
            log.warning("health() raised %r", exc)
            return 500, {"success": False, "message": f"health() raised {exc!r}"}
        try:
            _json.dumps_bytes(value)
        except (TypeError, ValueError) as exc:
            return 500, {"success": False, "message": f"health() returned a non-JSON value: {exc}"}
        return 200, {"success": True, "data": value}

    async def health(self, request: Request) -> Response:
        call = self._health_call
        if call is None or call.done():  # concurrent probes share one in-flight call
            call = self._health_call = asyncio.ensure_future(run_in_threadpool(self._call_health))
        try:
            status, payload = await asyncio.wait_for(asyncio.shield(call), HEALTH_TIMEOUT_S)
        except asyncio.TimeoutError:
            return _respond(503, {"success": False, "message": _slow_health()})
        return _respond(status, payload)

    async def live(self, request: Request) -> Response:
        return _respond(200, {"success": True})

    async def ready(self, request: Request) -> Response:
        rt = self.runtime
        if getattr(rt, "block", None) is None:
            return _respond(503, {"success": False, "message": "block not constructed"})
        if rt.draining:
            return _respond(503, {"success": False, "message": "draining: not taking new work"})
        client = self.ready_client
        if client is not None:
            try:
                await run_in_threadpool(client.ping)
            except Exception as exc:
                return _respond(503, {"success": False, "message": f"Redis unreachable: {exc}"})
        return _respond(200, {"success": True})

    async def set_parameters(self, request: Request) -> Response:
        self._authorize(request)
        update = await _read_object(request)
        ok, value = await run_in_threadpool(self.runtime.apply_parameters, update)
        if not ok:
            log.warning("parameter update refused by on_update: %s", value)
            return _respond(400, {"success": False, "message": str(value)})
        log.info("parameters updated over HTTP: %s", sorted(update))
        return _respond(200, {"success": True, "updated_parameters": value})

    async def mgmt(self, request: Request) -> Response:
        self._authorize(request)
        body = await _read_object(request)
        action = body.get("mgmt_action")
        if not isinstance(action, str) or not action:
            raise ClientError(400, "mgmt_action is required and must be a non-empty string")
        try:
            data = await run_in_threadpool(self.runtime.management, action, body.get("mgmt_data"))
        except Exception as exc:
            log.exception("management(%r) raised", action)
            return _respond(500, {"success": False, "message": f"management raised {exc!r}"})
        return _respond(200, {"success": True, "data": data})

    async def metrics(self, request: Request) -> Response:
        body = await run_in_threadpool(self.runtime.metrics.expose)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def _slow_health() -> str:
    return f"health() did not answer within {HEALTH_TIMEOUT_S:g}s"


async def _client_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ClientError):
        return Response(_error_body(exc.message), exc.status, exc.headers, _JSON)
    assert isinstance(exc, HTTPException)
    return Response(_error_body(exc.detail), exc.status_code, exc.headers, _JSON)


async def _server_error(request: Request, exc: Exception) -> Response:
    return Response(_error_body(f"internal error: {exc!r}"), 500, media_type=_JSON)


def build_app(runtime: Runtime, ready_client: redis.Redis | None = None) -> Starlette:
    """The control API as a Starlette app (``ready_client``: the Redis /ready pings)."""
    h = _Handlers(runtime, ready_client)
    routes = [
        Route("/health", h.health, methods=["GET"]),
        Route("/live", h.live, methods=["GET"]),
        Route("/ready", h.ready, methods=["GET"]),
        Route("/metrics", h.metrics, methods=["GET"]),
        Route("/setParameters", h.set_parameters, methods=["POST"]),
        Route("/mgmt", h.mgmt, methods=["POST"]),
    ]
    handlers = {ClientError: _client_error, HTTPException: _client_error, Exception: _server_error}
    return Starlette(routes=routes, exception_handlers=handlers)


class ControlServer:
    """uvicorn serving an app on a daemon thread; the socket is bound before it starts.

    Binding ourselves makes a port conflict a ConfigError in the caller (uvicorn would
    ``sys.exit`` its thread) and lets ``port=0`` pick a free port (read ``.port``). uvicorn
    only installs signal handlers on the main thread, so SIGTERM/SIGINT stay the runtime's.
    """

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.host = host
        self._sock = _bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", log_config=None, access_log=False, lifespan="off",
            ws="none", server_header=False, timeout_graceful_shutdown=2,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="aios-control", daemon=True)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException:  # SystemExit included: never take the process down
            log.exception("control API server stopped with an error")

    def start(self, timeout_s: float = 10.0) -> ControlServer:
        """Start serving; returns once uvicorn accepts connections (ConfigError if not)."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise ConfigError(f"control API did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (2 s at most), join the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._sock.close()


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot bind the control API to {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind the control API to {host}:{port}: {exc}") from None
    return sock


def start_control(runtime: Runtime) -> list[Callable[[], None]]:
    """Start the control API (unless MGMT_PORT=0) and the PARAMETER_UPDATES listener.

    Returns the closers, to be called in reverse order at shutdown. The bound port is set as
    ``runtime.control_port`` (None when the API is disabled).
    """
    s = runtime.settings
    closers: list[Callable[[], None]] = []
    port: int | None = None
    if s.mgmt_port:
        ready_client = connect(s.redis_url, socket_timeout_s=1.0)
        try:
            server = ControlServer(build_app(runtime, ready_client), s.control_bind, s.mgmt_port)
            server.start()
        except Exception:
            ready_client.close()
            raise
        closers += [ready_client.close, server.close]
        port = server.port
        log.info("control API on http://%s:%d", s.control_bind, port)
    setattr(runtime, "control_port", port)  # noqa: B010 - Runtime declares no such attribute yet
    listener = ParameterListener(runtime).start()
    closers.append(listener.stop)
    return closers
