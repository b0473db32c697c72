"""The HTTP control API: health, liveness, readiness, parameters, management and metrics.

``start_api(target)`` serves a small Starlette app (``server.ControlServer``: uvicorn on its own
thread, bound to ``settings.control_bind:settings.mgmt_port``; ``MGMT_PORT=0`` disables it) and
returns the bound port with the closers; ``start_listener(target)`` starts the
``PARAMETER_UPDATES`` listener (``params.py``). The runtime starts the two separately
(``start_api`` before the block is constructed, so probes answer while a model loads, and
``start_listener`` once it serves) and calls the closers at shutdown. Both take a
``ControlTarget`` (``target.py``), never the runtime itself.

No endpoint shares threads with another: ``/live`` and ``/ready`` answer on the event loop from
state alone (no thread hop, no network I/O); ``health()`` runs on its own thread, bounded by
``HEALTH_TIMEOUT_S``, and concurrent probes share one in-flight call; the metrics exposition
has its own thread; ``on_update`` and ``management`` run on a pool of ``CALLBACK_THREADS``
threads that admits at most ``CALLBACK_BACKLOG`` more calls waiting, and answers 503 beyond
that. So slow or piling-up user callbacks never stall the probes.

Who may call ``/setParameters`` and ``/mgmt`` is ``access.py``'s policy (a token, else loopback
callers only, unless ``AIOS_CONTROL_AUTH=none``); the probes and ``/metrics`` stay open. The
server's connections are bounded (``bounded.py``). Every error is
``{"success": false, "message": ...}``: bad client input is a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import _json
from .._connections import ConnectionBounds, Connections
from ..errors import ParameterLimitError, UpdateResultError
from .access import AccessPolicy
from .params import ParameterListener
from .server import ControlServer, Pool
from .target import STARTING, ControlTarget

__all__ = [
    "CALLBACK_BACKLOG",
    "CALLBACK_THREADS",
    "HEALTH_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "Started",
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
_T = TypeVar("_T")


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
        raise ClientError(400, f"body must be a JSON object, got {_json.type_name(value)}")
    return value


class _Handlers:
    """The endpoints; one instance per app, holding the target and the pools."""

    def __init__(self, target: ControlTarget) -> None:
        self.target = target
        self.policy = AccessPolicy.from_settings(target.settings)
        refused = target.metrics.register_counter(
            "aios_control_requests_refused_total",
            "POST /setParameters and /mgmt refused by the access policy",
            ["reason"],
        )
        self.refused = {r: refused.labels(reason=r) for r in ("unauthenticated", "not_loopback")}
        self.callbacks = Pool("aios-control-callback", CALLBACK_THREADS, CALLBACK_BACKLOG)
        self.health_pool = Pool("aios-control-health", 1)  # probes share one in-flight call
        self.metrics_pool = Pool("aios-control-metrics", 1, 8)
        self._health_call: asyncio.Future[tuple[int, dict[str, Any]]] | None = None

    def close(self) -> None:
        for pool in (self.callbacks, self.health_pool, self.metrics_pool):
            pool.close()

    def _authorize(self, request: Request) -> None:
        refusal = self.policy.refusal(
            authorization=request.headers.get("authorization", ""),
            peer=request.client.host if request.client else None,
            header_names=request.headers.keys(),
        )
        if refusal is not None:
            self.refused[refusal.reason].inc()
            raise ClientError(refusal.status, refusal.message, refusal.headers or None)

    def _constructed(self) -> None:
        if not self.target.constructed():
            raise ClientError(503, STARTING, {"Retry-After": "1"})

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
            value = self.target.health()
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
        problem = self.target.not_live()
        if problem:
            return _respond(503, {"success": False, "message": problem})
        return _respond(200, {"success": True})

    async def ready(self, request: Request) -> Response:
        problem = self.target.not_ready()
        if problem:
            return _respond(503, {"success": False, "message": problem})
        return _respond(200, {"success": True})

    async def set_parameters(self, request: Request) -> Response:
        self._authorize(request)
        self._constructed()
        update = await _read_object(request)
        try:
            ok, value = await self._callback(lambda: self.target.apply_parameters(update))
        except ParameterLimitError as exc:
            return _respond(413, {"success": False, "message": str(exc)})
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
        if data is None:
            data = {}  # management(action, data) takes a dict, as the existing SDK passes
        try:
            result = await self._callback(lambda: self.target.management(action, data))
        except ClientError:
            raise
        except Exception as exc:
            log.exception("management(%r) raised", action)
            return _respond(500, {"success": False, "message": f"management raised {exc!r}"})
        return _respond(200, {"success": True, "data": result})

    async def metrics(self, request: Request) -> Response:
        call = self.metrics_pool.submit(self.target.exposition)
        if call is None:
            raise ClientError(503, "busy: metrics scrapes are piling up", {"Retry-After": "1"})
        return Response(await call, media_type=CONTENT_TYPE_LATEST)


def _slow_health() -> str:
    return f"health() did not answer within {HEALTH_TIMEOUT_S:g}s"


async def _client_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ClientError):
        return Response(_error_body(exc.message), exc.status, exc.headers, _JSON)
    assert isinstance(exc, HTTPException)
    return Response(_error_body(exc.detail), exc.status_code, exc.headers, _JSON)


async def _server_error(request: Request, exc: Exception) -> Response:
    return Response(_error_body(f"internal error: {exc!r}"), 500, media_type=_JSON)


def build_app(target: ControlTarget) -> Starlette:
    """The control API as a Starlette app (its threads are daemons, started on demand)."""
    return _app(_Handlers(target))


def _app(h: _Handlers, extra: Sequence[BaseRoute] = ()) -> Starlette:
    routes: list[BaseRoute] = [
        Route("/health", h.health, methods=["GET"]),
        Route("/live", h.live, methods=["GET"]),
        Route("/ready", h.ready, methods=["GET"]),
        Route("/metrics", h.metrics, methods=["GET"]),
        Route("/setParameters", h.set_parameters, methods=["POST"]),
        Route("/mgmt", h.mgmt, methods=["POST"]),
        *extra,
    ]
    handlers = {ClientError: _client_error, HTTPException: _client_error, Exception: _server_error}
    return Starlette(routes=routes, exception_handlers=handlers)


class Started(NamedTuple):
    """What ``start_api`` and ``start_control`` return."""

    port: int | None  # the bound port; None when MGMT_PORT=0 disabled the API
    closers: list[Callable[[], None]]  # to call in reverse order at shutdown


def start_api(target: ControlTarget, routes: Sequence[BaseRoute] = ()) -> Started:
    """Serve the HTTP API (unless MGMT_PORT=0), with ``routes`` mounted beside its own (the
    ingest's ``/infer``); the bound port and the closers.

    Safe before the block is constructed: until then ``/live`` is 200 and ``/ready``,
    ``/health``, ``/setParameters`` and ``/mgmt`` are 503 ``"starting: ..."``.
    """
    s = target.settings
    if not s.mgmt_port:
        return Started(None, [])
    handlers = _Handlers(target)
    bounds = ConnectionBounds.from_settings(s)
    connections = Connections(bounds.max_connections, target.metrics, "api")
    try:
        server = ControlServer(
            _app(handlers, routes), s.control_bind, s.mgmt_port, bounds, connections
        )
        server.start()
    except BaseException:
        handlers.close()
        raise
    policy = handlers.policy
    log.info("control API on http://%s:%d; %s", s.control_bind, server.port, policy.describe())
    if policy.mode == "open":
        log.warning(
            "AIOS_CONTROL_AUTH=none: anyone who reaches %s:%d can change parameters and call "
            "management(); set AIOS_CONTROL_TOKEN instead",
            s.control_bind,
            server.port,
        )
    return Started(server.port, [handlers.close, server.close])


def start_listener(target: ControlTarget) -> list[Callable[[], None]]:
    """Start the PARAMETER_UPDATES listener (needs the constructed block); its closer."""
    return [ParameterListener(target).start().stop]


def start_control(target: ControlTarget) -> Started:
    """``start_api`` and ``start_listener`` together; closers in start order (close reversed)."""
    port, closers = start_api(target)
    try:
        return Started(port, closers + start_listener(target))
    except BaseException:
        for close in reversed(closers):
            close()
        raise
