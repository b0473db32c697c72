"""Helpers every test shares: the repository root, and waiting for a condition with a bound.

Tests never sleep for a fixed time hoping work is done: they wait for the state they expect
(``eventually``) or step a worker until it is idle (``drain_until_idle``), each with a
deadline, so a hang fails fast with a message instead of stalling the suite.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

ROOT = Path(__file__).resolve().parents[1]
SIMPLE_BLOCK = f"{ROOT / 'examples' / 'simple_block' / 'block.py'}:SimpleBlock"

T = TypeVar("T")


class FakeClock:
    """A clock the test moves by hand (``clock.now = t`` or ``clock.advance(s)``)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Steppable(Protocol):
    def step(self) -> int: ...


def eventually(
    predicate: Callable[[], T],
    timeout_s: float = 10.0,
    what: str = "",
    interval_s: float = 0.01,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail the test
    (AssertionError naming ``what``) once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what or predicate}")
        time.sleep(interval_s)


def step_until(worker: Steppable, predicate: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Step ``worker`` on this thread until ``predicate()`` holds (bounded)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker did not get there within {timeout_s:g}s")
        worker.step()


def drain_until_idle(worker: Steppable, idle_steps: int = 3, timeout_s: float = 10.0) -> int:
    """Step ``worker`` until ``idle_steps`` steps in a row claim nothing; return how many
    packets it claimed in all. Bounded by ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    claimed = idle = 0
    while idle < idle_steps:
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker was still busy after {timeout_s:g}s")
        n = worker.step()
        claimed += n
        idle = 0 if n else idle + 1
    return claimed


# -- raw connections, for tests of how servers treat clients ---------------------------------


def connect(port: int, source: str | None = None, timeout_s: float = 5.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port``, from ``source`` (a local address) if given."""
    where = (source, 0) if source else None
    return socket.create_connection(("127.0.0.1", port), timeout_s, source_address=where)


def read_response(sock: socket.socket, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """One HTTP response with a Content-Length from ``sock``: (status, body)."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(v)
        for k, _, v in (ln.partition(":") for ln in lines[1:])
        if k.lower() == "content-length"
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of a body"
        body += chunk
    return int(lines[0].split()[1]), body


def closed_by_peer(sock: socket.socket, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the peer to close ``sock`` (EOF or reset); discards data."""
    deadline = time.monotonic() + timeout_s
    while (remaining_s := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining_s)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def close_times(socks: list[socket.socket], timeout_s: float) -> dict[socket.socket, float]:
    """Wait (at most ``timeout_s``) until the peer closed each of ``socks``; when it did, in
    ``time.monotonic()`` seconds, for those it closed in time."""
    closed: dict[socket.socket, float] = {}
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while len(closed) < len(socks) and (remaining_s := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(remaining_s):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed[sock] = time.monotonic()
                    selector.unregister(sock)
    return closed


def non_loopback_address() -> str | None:
    """A local IPv4 address that is not loopback (to connect to 127.0.0.1 *from*), or None.
    A UDP ``connect`` only looks the route up: nothing is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737)
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    if address.startswith("127.") or address == "0.0.0.0":
        return None
    try:  # can this host connect from it to its own loopback?
        with (
            socket.create_server(("127.0.0.1", 0)) as server,
            connect(server.getsockname()[1], address, 2.0),
        ):
            pass
    except OSError:
        return None
    return address
