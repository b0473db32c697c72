"""The server plumbing: ``Pool`` (bounded daemon threads for callbacks) and ``ControlServer``
(uvicorn on a socket bound up front), over real threads and real HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from aios_instance._connections import ConnectionBounds, Connections
from aios_instance.control.server import ControlServer, Pool
from aios_instance.errors import ConfigError
from aios_instance.metrics import AIOSMetrics
from tests.support import eventually

T = TypeVar("T")


def run_on(pool: Pool, fn: Callable[[], T]) -> T:
    """Submit ``fn`` from an event loop (as the API does) and wait for its result."""

    async def main() -> T:
        call = pool.submit(fn)
        assert call is not None, "the pool refused the call"
        return await call

    return asyncio.run(main())


@pytest.fixture
def pool() -> Iterator[Pool]:
    p = Pool("test-pool", threads=1, backlog=1)
    yield p
    p.close()


def test_calls_run_on_the_pools_daemon_threads(pool: Pool) -> None:
    current = run_on(pool, threading.current_thread)
    assert current.name == "test-pool-0" and current.daemon
    assert run_on(pool, threading.current_thread) is current  # the thread is reused


def test_errors_reach_the_caller_and_system_exit_does_not_escape(pool: Pool) -> None:
    def fail() -> None:
        raise ValueError("nope")

    def leave() -> None:
        raise SystemExit(3)

    with pytest.raises(ValueError, match="nope"):
        run_on(pool, fail)
    with pytest.raises(RuntimeError, match="callback raised SystemExit"):
        run_on(pool, leave)
    assert run_on(pool, lambda: "still serving") == "still serving"


def test_the_pool_admits_threads_plus_backlog_and_refuses_the_rest(pool: Pool) -> None:
    release = threading.Event()

    async def main() -> list[Any]:
        admitted = [pool.submit(release.wait), pool.submit(lambda: "queued")]
        refused = pool.submit(lambda: "refused")
        assert refused is None and pool.limit == 2
        release.set()
        results = await asyncio.gather(*(c for c in admitted if c is not None))
        again = pool.submit(lambda: "again")  # room once the calls are done
        assert again is not None
        return [*results, await again]

    assert asyncio.run(main()) == [True, "queued", "again"]


def test_a_closed_pool_refuses_calls_and_its_threads_end(pool: Pool) -> None:
    worker = run_on(pool, threading.current_thread)
    pool.close()
    assert asyncio.run(_submit_later(pool)) is None
    eventually(lambda: not worker.is_alive(), what="the pool thread to end")


async def _submit_later(pool: Pool) -> object:
    return pool.submit(lambda: "late")


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


APP = Starlette(routes=[Route("/", hello)])


def server_on(host: str, port: int) -> ControlServer:
    """A ControlServer with the default bounds, counted on a throwaway registry."""
    return ControlServer(
        APP, host, port, ConnectionBounds(), Connections(128, AIOSMetrics(), "api")
    )


def test_port_zero_picks_a_free_port_and_close_stops_serving() -> None:
    server = server_on("127.0.0.1", 0).start()
    try:
        assert server.port > 0
        assert httpx.get(f"http://127.0.0.1:{server.port}/", timeout=5).text == "hello"
    finally:
        server.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/", timeout=2)


def test_a_port_in_use_is_a_config_error_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot bind the control API to 127.0.0.1:{port}"):
            server_on("127.0.0.1", port)


def test_an_unknown_host_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cannot bind the control API to no-such-host\.invalid"):
        server_on("no-such-host.invalid", 0)
