"""Server plumbing for the control API: uvicorn on a socket bound up front, and the small
thread pools that keep user callbacks off the event loop.

``ControlServer`` binds the socket itself, so a port conflict is a ``ConfigError`` in the
caller and ``port=0`` picks a free port; uvicorn runs on a daemon thread and never installs
signal handlers there (SIGTERM/SIGINT stay the runtime's). Its connections are bounded
(``bounded.py``: header and idle timeouts, a connection limit). ``Pool`` runs calls on a few daemon
threads and refuses, rather than queues, what is beyond its bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn
from starlette.applications import Starlette

from .._connections import ConnectionBounds, Connections
from ..errors import ConfigError
from .bounded import bounded_protocol

__all__ = ["ControlServer", "Pool"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_Job = tuple[concurrent.futures.Future[Any], Callable[[], Any]]


class Pool:
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

    @property
    def pending(self) -> int:
        """Calls admitted and not finished (running or waiting)."""
        with self._lock:
            return self._pending

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


class ControlServer:
    """uvicorn serving an app on a daemon thread; the socket is bound before it starts.

    Binding ourselves makes a port conflict a ConfigError in the caller (uvicorn would
    ``sys.exit`` its thread) and lets ``port=0`` pick a free port (read ``.port``). uvicorn
    only installs signal handlers on the main thread, so SIGTERM/SIGINT stay the runtime's.

    ``scope["client"]`` is the socket's peer, never a forwarded-for header: uvicorn's proxy
    headers are off (see ``access.py`` for why a forwarded request is never "loopback").
    """

    def __init__(
        self,
        app: Starlette,
        host: str,
        port: int,
        bounds: ConnectionBounds,
        connections: Connections,
    ) -> None:
        self.host = host
        self._sock = _bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            http=bounded_protocol(bounds, connections),
            proxy_headers=False,
            forwarded_allow_ips=[],  # also keeps uvicorn from reading FORWARDED_ALLOW_IPS
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=2,
        )
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
        raise ConfigError(_cannot_bind(host, port, exc)) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(_cannot_bind(host, port, exc)) from None
    return sock


def _cannot_bind(host: str, port: int, exc: OSError) -> str:
    return (
        f"cannot bind the control API to {host}:{port}: {exc}. Set MGMT_PORT to a free port "
        "(or 0 to turn the API off); `aios-instance run` picks free ports when none is set"
    )
