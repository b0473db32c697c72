"""The Prometheus exposition server on ``METRICS_PORT``, with bounded connections.

prometheus_client's ``start_http_server`` is a threading WSGI server: a thread per
connection and no socket timeout, so a client that connects and sends nothing (or one
header byte a minute) holds a thread for ever, and any number of them may. This one serves
the same WSGI app (``prometheus_client.make_wsgi_app``) with the ``ConnectionBounds``:

* the request must be complete within ``header_timeout_s`` of accept (a deadline over all
  its reads, not a per-read timeout that dribbling bytes would keep resetting);
* a reply the client does not read stalls for at most ``idle_timeout_s`` (the socket
  timeout); there is no keep-alive (one request per connection, as in wsgiref);
* past ``max_connections`` open, a new connection is closed at once on accept.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app

from ._connections import ConnectionBounds, Connections

__all__ = ["MetricsServer", "serve_metrics"]


class _DeadlineReader(io.RawIOBase):
    """Reads from a socket until a deadline (``time.monotonic()``); TimeoutError after it."""

    def __init__(self, sock: socket.socket, deadline: float, timeout_s: float) -> None:
        self._sock, self._deadline, self._timeout_s = sock, deadline, timeout_s
        self.expired = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining_s = self._deadline - time.monotonic()
        if remaining_s <= 0:
            self.expired = True
            raise TimeoutError("no complete request within the header timeout")
        self._sock.settimeout(remaining_s)
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            self.expired = True
            raise
        finally:
            self._sock.settimeout(self._timeout_s)  # writes keep the idle timeout


class _Handler(WSGIRequestHandler):
    """One request; reads bounded by the deadline; logs nothing per request."""

    server: _Server

    def setup(self) -> None:
        bounds = self.server.bounds
        super().setup()
        self.connection.settimeout(bounds.idle_timeout_s)  # bounds the writes
        deadline = time.monotonic() + bounds.header_timeout_s
        self._reader = _DeadlineReader(self.connection, deadline, bounds.idle_timeout_s)
        self.rfile = io.BufferedReader(self._reader)

    def handle(self) -> None:
        try:
            super().handle()
        except TimeoutError:  # socketserver would print a traceback for it
            reason = "header_timeout" if self._reader.expired else "idle_timeout"
            self.server.tracker.timed_out(reason)

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing per request (as prometheus_client's own handler)."""


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per admitted connection, at most ``bounds.max_connections`` of them."""

    daemon_threads = True  # a stuck scrape never keeps the process from exiting

    def __init__(
        self, addr: str, port: int, bounds: ConnectionBounds, tracker: Connections
    ) -> None:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self.address_family = family  # read by TCPServer.__init__ when it makes the socket
        self.bounds, self.tracker = bounds, tracker
        self._admitted: set[Any] = set()
        self._lock = threading.Lock()
        super().__init__((str(sockaddr[0]), int(sockaddr[1])), _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Admit the connection, or refuse it (socketserver closes it at once)."""
        if not self.tracker.admit():
            return False
        with self._lock:
            self._admitted.add(request)
        return True

    def shutdown_request(self, request: Any) -> None:
        """Called once for every accepted connection, admitted or not."""
        try:
            super().shutdown_request(request)
        finally:
            with self._lock:
                admitted = request in self._admitted
                self._admitted.discard(request)
            if admitted:
                self.tracker.release()


class MetricsServer:
    """Handle of :meth:`AIOSMetrics.serve_http`; ``close()`` stops the server."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        """The bound TCP port (useful after ``serve_http(0)``)."""
        return int(self.server.server_port)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop serving, close the socket and join the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout_s)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(
    registry: Any, port: int, addr: str, bounds: ConnectionBounds, tracker: Connections
) -> MetricsServer:
    """Serve ``registry``'s exposition on ``addr:port`` from a daemon thread (OSError when the
    address cannot be bound)."""
    server = _Server(addr, port, bounds, tracker)
    server.set_app(make_wsgi_app(registry))
    thread = threading.Thread(target=server.serve_forever, name="aios-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
