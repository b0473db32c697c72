"""The HTTP control API: health, liveness, readiness, parameters, management and metrics.

``start_control(runtime)`` serves a small Starlette app under uvicorn on its own thread (bound
to ``settings.control_bind:settings.mgmt_port``; ``MGMT_PORT=0`` disables it) and starts the
``PARAMETER_UPDATES`` listener (``params.py``); the runtime starts the two separately
(``start_api`` before the block is constructed, so probes answer while a model loads, and
``start_listener`` once it serves). Each returns the closers the runtime calls at shutdown.

No endpoint shares threads with another: ``/live`` and ``/ready`` answer on the event loop from
state alone (no thread hop, no network I/O); ``health()`` runs on its own thread, bounded by
``HEALTH_TIMEOUT_S``, and concurrent probes share one in-flight call; the metrics exposition
has its own thread; ``on_update`` and ``management`` run on a pool of ``CALLBACK_THREADS``
threads that admits at most ``CALLBACK_BACKLOG`` more calls waiting, and answers 503 beyond
that. So slow or piling-up user callbacks never stall the probes.

Every error is ``{"success": false, "message": ...}``: bad client input is a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import _json
from ..errors import ConfigError
from .params import ParameterListener, UpdateResultError

if TYPE_CHECKING:
    from ..runtime.block import Runtime

__all__ = [
    "CALLBACK_BACKLOG",
    "CALLBACK_THREADS",
    "HEALTH_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "ControlServer",
    "build_app",
    "start_api",
    "start_control",
    "start_listener",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # larger request bodies get 413
HEALTH_TIMEOUT_S = 5.0  # health() slower than this answers 503 (the call keeps running)
CALLBACK_THREADS = 4  # threads running on_update/management (POST /setParameters, /mgmt)
CALLBACK_BACKLOG = 16  # calls that may wait for one of them; beyond that: 503
_JSON = "application/json"
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
_STARTING = "starting: the block is being constructed"
_T = TypeVar("_T")


class ClientError(Exception):
    """A request the API refuses; becomes ``{"success": false, "message"}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


_Job = tuple[concurrent.futures.Future[Any], Callable[[], Any]]


class _Pool:
    """A few daemon threads running calls, admitting at most ``threads + backlog`` at once.

    Not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined at interpreter exit,
    so one hung user callback would keep the process from exiting. Threads start on demand.
    """

    def __init__(self, name: str, threads: int, backlog: int = 0) -> None:
        self.name, self.threads, self.limit = name, threads, threads + backlog
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0  # admitted, not finished (running or waiting)
        self._started = 0
        self._closed = False

    def submit(self, fn: Callable[[], _T]) -> asyncio.Future[_T] | None:
        """Run ``fn`` on a pool thread (awaitable), or None when the pool is full or closed."""
        with self._lock:
            if self._closed or self._pending >= self.limit:
                return None
            self._pending += 1
            if self._started < min(self.threads, self._pending):
                name = f"{self.name}-{self._started}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
                self._started += 1
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._jobs.put((future, fn))
        return asyncio.wrap_future(future)

    def close(self) -> None:
        """Stop the threads once idle; never waits for a running call (it may hang)."""
        with self._lock:
            self._closed, count = True, self._started
        for _ in range(count):
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn = job
            if not future.set_running_or_notify_cancel():  # its request went away meanwhile
                self._finished()
                continue
            try:
                result = fn()
            except Exception as exc:
                self._finished()
                future.set_exception(exc)
            except BaseException as exc:  # SystemExit must not reach the event loop
                self._finished()
                future.set_exception(RuntimeError(f"callback raised {exc!r}"))
            else:
                self._finished()  # before the result: whoever sees it done may submit again
                future.set_result(result)

    def _finished(self) -> None:
        with self._lock:
            self._pending -= 1


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
    """The endpoints; one instance per app, holding the runtime and the pools."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.token = runtime.settings.control_token
        self.callbacks = _Pool("aios-control-callback", CALLBACK_THREADS, CALLBACK_BACKLOG)
        self.health_pool = _Pool("aios-control-health", 1)  # probes share one in-flight call
        self.metrics_pool = _Pool("aios-control-metrics", 1, 8)
        self._health_call: asyncio.Future[tuple[int, dict[str, Any]]] | None = None

    def close(self) -> None:
        for pool in (self.callbacks, self.health_pool, self.metrics_pool):
            pool.close()

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

    def _constructed(self) -> None:
        if self.runtime.block is None:
            raise ClientError(503, _STARTING, {"Retry-After": "1"})

    async def _callback(self, fn: Callable[[], _T]) -> _T:
        """Run a user callback on the callback pool; 503 when it is saturated."""
        call = self.callbacks.submit(fn)
        if call is None:
            raise ClientError(
                503,
                f"busy: {self.callbacks.limit} parameter/management calls are running or "
                "waiting; retry later",
                {"Retry-After": "1"},
            )
        return await call

    def _call_health(self) -> tuple[int, dict[str, Any]]:
        """Runs on the health thread: health() and the check that its value is JSON."""
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
        self._constructed()
        call = self._health_call
        if call is None or call.done():  # concurrent probes share one in-flight call
            call = self.health_pool.submit(self._call_health)
            if call is None:  # pragma: no cover - one call at a time never fills the pool
                return _respond(503, {"success": False, "message": _slow_health()})
            self._health_call = call
        try:
            status, payload = await asyncio.wait_for(asyncio.shield(call), HEALTH_TIMEOUT_S)
        except asyncio.TimeoutError:
            return _respond(503, {"success": False, "message": _slow_health()})
        return _respond(status, payload)

    async def live(self, request: Request) -> Response:
        return _respond(200, {"success": True})

    async def ready(self, request: Request) -> Response:
        problem = _not_ready(self.runtime)
        if problem:
            return _respond(503, {"success": False, "message": problem})
        return _respond(200, {"success": True})

    async def set_parameters(self, request: Request) -> Response:
        self._authorize(request)
        self._constructed()
        update = await _read_object(request)
        try:
            ok, value = await self._callback(lambda: self.runtime.apply_parameters(update))
        except UpdateResultError as exc:
            return _respond(500, {"success": False, "message": str(exc)})
        if not ok:
            log.warning("parameter update refused by on_update: %s", value)
            return _respond(400, {"success": False, "message": str(value)})
        log.info("parameters updated over HTTP: %s", sorted(update))
        return _respond(200, {"success": True, "updated_parameters": value})

    async def mgmt(self, request: Request) -> Response:
        self._authorize(request)
        self._constructed()
        body = await _read_object(request)
        action = body.get("mgmt_action")
        if not isinstance(action, str) or not action:
            raise ClientError(400, "mgmt_action is required and must be a non-empty string")
        data = body.get("mgmt_data")
        try:
            result = await self._callback(lambda: self.runtime.management(action, data))
        except ClientError:
            raise
        except Exception as exc:
            log.exception("management(%r) raised", action)
            return _respond(500, {"success": False, "message": f"management raised {exc!r}"})
        return _respond(200, {"success": True, "data": result})

    async def metrics(self, request: Request) -> Response:
        call = self.metrics_pool.submit(self.runtime.metrics.expose)
        if call is None:
            raise ClientError(503, "busy: metrics scrapes are piling up", {"Retry-After": "1"})
        return Response(await call, media_type=CONTENT_TYPE_LATEST)


def _not_ready(rt: Runtime) -> str:
    """Why the instance is not ready ("" when it is), from state alone: no I/O, no threads.

    Ready means constructed, serving (the lease keeper runs), not draining, and the lease
    renewed within its TTL, i.e. the instance Redis answered recently (renewals run every TTL/3).
    """
    if rt.block is None:
        return _STARTING
    if rt.draining:
        return "draining: not taking new work"
    lease = getattr(rt, "lease", None)
    renewed_at = getattr(lease, "renewed_at", None)
    if renewed_at is None:
        return "starting: not serving yet"
    age = time.monotonic() - renewed_at
    if age > rt.settings.lease_ttl_s:
        return f"Redis unreachable: the lease was last renewed {age:.1f}s ago"
    return ""


def _slow_health() -> str:
    return f"health() did not answer within {HEALTH_TIMEOUT_S:g}s"


async def _client_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ClientError):
        return Response(_error_body(exc.message), exc.status, exc.headers, _JSON)
    assert isinstance(exc, HTTPException)
    return Response(_error_body(exc.detail), exc.status_code, exc.headers, _JSON)


async def _server_error(request: Request, exc: Exception) -> Response:
    return Response(_error_body(f"internal error: {exc!r}"), 500, media_type=_JSON)


def build_app(runtime: Runtime) -> Starlette:
    """The control API as a Starlette app (its threads are daemons, started on demand)."""
    return _app(_Handlers(runtime))


def _app(h: _Handlers) -> Starlette:
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


def start_api(runtime: Runtime) -> list[Callable[[], None]]:
    """Serve the HTTP API (unless MGMT_PORT=0); sets ``runtime.control_port``; the closers.

    Safe before the block is constructed: until then ``/live`` is 200 and ``/ready``,
    ``/health``, ``/setParameters`` and ``/mgmt`` are 503 ``"starting: ..."``.
    """
    s = runtime.settings
    if not s.mgmt_port:
        runtime.control_port = None
        return []
    handlers = _Handlers(runtime)
    try:
        server = ControlServer(_app(handlers), s.control_bind, s.mgmt_port).start()
    except BaseException:
        handlers.close()
        raise
    runtime.control_port = server.port
    log.info("control API on http://%s:%d", s.control_bind, server.port)
    return [handlers.close, server.close]


def start_listener(runtime: Runtime) -> list[Callable[[], None]]:
    """Start the PARAMETER_UPDATES listener (needs the constructed block); its closer."""
    return [ParameterListener(runtime).start().stop]


def start_control(runtime: Runtime) -> list[Callable[[], None]]:
    """``start_api`` and ``start_listener`` together; closers in start order (close reversed)."""
    closers = start_api(runtime)
    try:
        return closers + start_listener(runtime)
    except BaseException:
        for close in reversed(closers):
            close()
        raise
