"""uvicorn's h11 protocol with a header timeout, an idle timeout and a connection limit.

uvicorn's ``H11Protocol`` arms no timer on a new connection, and none while a request's
headers trickle in: a client that connects and sends nothing, or one header byte at a time,
holds its connection for ever (slowloris); and it takes any number of connections. Here
each connection has at most one deadline:

* from accept, and from the first byte of each later request, until the request is complete
  (headers and body): ``header_timeout_s``, never extended by more bytes;
* after a response, until the next request starts: ``idle_timeout_s`` (replacing uvicorn's
  own keep-alive timer);
* none while the app handles a complete request (the API bounds its own calls).

A connection past ``max_connections`` is closed at once on accept.

Depends on uvicorn internals (pinned in pyproject.toml; checked with uvicorn 0.55):
``H11Protocol.__init__(config, server_state, app_state, _loop)``, its ``connection_made``,
``data_received``, ``on_response_complete`` and ``connection_lost``, its ``conn``
(``h11.Connection``), ``transport`` and ``loop`` attributes and
``_unset_keepalive_if_required()``; and on h11's public ``their_state`` and
``trailing_data``.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .._connections import ConnectionBounds, Connections

__all__ = ["BoundedH11Protocol", "bounded_protocol"]

# Their states in which a request has begun but is not complete yet.
_RECEIVING = (h11.IDLE, h11.SEND_BODY)


class BoundedH11Protocol(H11Protocol):
    """``H11Protocol`` with the deadlines above; subclass it per server with
    ``bounded_protocol`` (uvicorn builds protocols from a class, with no extra arguments)."""

    bounds: ClassVar[ConnectionBounds]
    tracker: ClassVar[Connections]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._reason = ""  # what the armed deadline is for ("" when none is armed)
        self._admitted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.tracker.admit():
            transport.close()  # connection_lost follows; nothing was read
            return
        self._admitted = True
        self._arm("header_timeout")  # a new connection owes us a request

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._after_input()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()  # uvicorn's keep-alive timer: ours replaces it
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            self._arm("idle_timeout")
        else:  # a pipelined request already began (or a body is still coming)
            self._after_input()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._admitted:
            self._admitted = False
            self.tracker.release()
        super().connection_lost(exc)

    def _after_input(self) -> None:
        if self.transport.is_closing() or self.conn.their_state not in _RECEIVING:
            self._cancel()  # a whole request is in: the app's turn, no deadline
        elif self._reason != "header_timeout":
            # The first bytes of a request: its deadline runs from here and more bytes never
            # extend it, so dribbling one byte at a time does not keep the connection.
            self._arm("header_timeout")

    def _arm(self, reason: str) -> None:
        self._cancel()
        b = self.bounds
        delay_s = b.header_timeout_s if reason == "header_timeout" else b.idle_timeout_s
        self._deadline = self.loop.call_later(delay_s, self._expire, reason)
        self._reason = reason

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._reason = None, ""

    def _expire(self, reason: str) -> None:
        self._deadline, self._reason = None, ""
        if not self.transport.is_closing():
            self.tracker.timed_out(reason)
            self.transport.close()


def bounded_protocol(
    bounds: ConnectionBounds, connections: Connections
) -> type[BoundedH11Protocol]:
    """A ``BoundedH11Protocol`` class for one server (pass it as uvicorn's ``http=``)."""

    class ServerProtocol(BoundedH11Protocol):
        pass

    ServerProtocol.bounds = bounds
    ServerProtocol.tracker = connections
    return ServerProtocol
