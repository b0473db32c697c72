"""``aios-instance send --http/--ws/--grpc``: jobs straight to a running block's ingest
(``POST /infer``, with ``--stream`` its Server-Sent Events; the WebSocket port; gRPC
``InferenceProxy``) instead of its Redis input list. No Redis is needed. What comes back is
printed as JSON lines as it arrives; a refusal or an unreachable server is one line
(``AIOSError``), never a traceback, and every wait is bounded by ``--timeout-s``."""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from ._cli_send import pretty
from .errors import ConfigError, TransportError
from .packet import AIOSPacket

__all__ = ["check_ingest_options", "send_ingest"]

_HINTS = {
    "http": "is the block running? POST /infer is on its control port (MGMT_PORT, default 18001)",
    "ws": "is the block running? WebSocket is on AIOS_WS_PORT (default 18002)",
}


def check_ingest_options(args: argparse.Namespace) -> bool:
    """Whether ``send`` goes to an ingest (``--http``/``--ws``/``--grpc``); refuses the
    options that mean nothing there."""
    via = "--http" if args.http else "--ws" if args.ws else "--grpc" if args.grpc else None
    if args.stream and not args.http:
        raise ConfigError("--stream goes with --http URL (Server-Sent Events of POST /infer)")
    if via is None:
        if args.token:
            raise ConfigError("--token goes with --http, --ws or --grpc")
        return False
    if args.to:
        raise ConfigError(f"--to names a Redis list; {via} sends to the block's ingest")
    if args.output_ptr and via != "--grpc":
        raise ConfigError(f"--output-ptr: {via} answers the outputs to the caller")
    if args.wait and via == "--grpc":
        raise ConfigError("--wait reads a Redis reply list; --grpc only enqueues the job")
    if args.file and via == "--ws":
        raise ConfigError("--file cannot go over --ws (its jobs are JSON): use --http")
    return True


def send_ingest(args: argparse.Namespace, packets: Sequence[AIOSPacket], settings: Any) -> int:
    """Send ``packets`` by the ingest the options name; 0 when every job was answered."""
    token = args.token or settings.control_token
    if args.grpc:
        return _grpc(args.grpc, packets, settings.block_id, token, args.timeout)
    if args.http:
        return _http(args.http, packets, token, args.timeout, stream=args.stream)
    return _ws(args.ws, packets, token, args.timeout)


def _unreachable(url: str, exc: OSError, timeout_s: float, hint: str) -> TransportError:
    if isinstance(exc, TimeoutError):
        return TransportError(f"no answer from {url} within {timeout_s:g}s (--timeout-s)")
    if isinstance(exc, socket.gaierror):
        return TransportError(f"cannot resolve the host of {url}: {exc.strerror or exc}")
    why = "connection refused" if isinstance(exc, ConnectionRefusedError) else exc.strerror
    return TransportError(f"cannot reach {url}: {why or exc}; {hint}")


def _refusal(url: str, status: int, message: str, token: str | None) -> TransportError:
    hint = ""
    if status in (401, 403) and not token:
        hint = " (pass --token or set AIOS_CONTROL_TOKEN)"
    return TransportError(f"{url} answered {status}: {message}{hint}")


# -- HTTP -----------------------------------------------------------------------------------
def _http(
    url: str, packets: Sequence[AIOSPacket], token: str | None, timeout_s: float, *, stream: bool
) -> int:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--http: not an http(s) URL: {url!r} (e.g. http://127.0.0.1:18001/infer)"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"--http: bad port in {url!r}") from None
    path = parts.path if parts.path not in ("", "/") else "/infer"
    query = "&".join(q for q in (parts.query, "stream=true" if stream else "") if q)
    target = f"{path}?{query}" if query else path
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname, port, timeout=timeout_s)
    headers = {"Accept": "text/event-stream" if stream else "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        for packet in packets:
            body, content_type = _body(packet)
            try:
                conn.request("POST", target, body, {**headers, "Content-Type": content_type})
                sock = conn.sock
                response = conn.getresponse()
                if stream and response.status == 200:
                    _print_events(url, response, sock, timeout_s)
                else:
                    _print_reply(url, response, token)
            except OSError as exc:
                raise _unreachable(url, exc, timeout_s, _HINTS["http"]) from None
            except http.client.HTTPException as exc:
                raise TransportError(f"{url}: not an HTTP answer: {exc!r}") from None
    finally:
        conn.close()
    return 0


def _body(packet: AIOSPacket) -> tuple[bytes, str]:
    """The job as ``POST /infer`` takes it: JSON, or multipart when it has files. ``data``
    travels as the packet's JSON text, so the block reads what a Redis ``send`` pushes."""
    fields = {"data": packet.data, "session_id": packet.session_id, "seq_no": packet.seq_no}
    fields["ts"] = packet.ts
    if not packet.files:
        return json.dumps(fields).encode(), "application/json"
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        head = f'Content-Disposition: form-data; name="{name}"'
        parts.append(f"--{boundary}\r\n{head}\r\n\r\n{value}\r\n".encode())
    for file in packet.files:
        filename = str(file.metadata_dict().get("filename", "file")).replace('"', "_")
        head = f'Content-Disposition: form-data; name="file"; filename="{filename}"'
        kind = "Content-Type: application/octet-stream"
        parts.append(f"--{boundary}\r\n{head}\r\n{kind}\r\n\r\n".encode())
        parts.append(file.file_data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _print_reply(url: str, response: http.client.HTTPResponse, token: str | None) -> None:
    """Each output of a reply as a JSON line; a refusal raises (status and message)."""
    raw = response.read()
    reply = _decoded(raw)
    if not isinstance(reply, dict):
        raise TransportError(f"{url} answered {response.status}, not JSON: {raw[:200]!r}")
    if response.status >= 300 or reply.get("success") is not True:
        raise _refusal(url, response.status, str(reply.get("message", reply)), token)
    for output in reply.get("outputs", ()):
        print(json.dumps(output), flush=True)
    job = f"{reply.get('session_id')}:{reply.get('seq_no')}"
    if reply.get("queued"):
        print(f"job {job} queued (a muxer block: its group's output is routed)", file=sys.stderr)
    elif reply.get("held") and not reply.get("outputs"):
        print(f"job {job} held ({reply['held']} entries wait for their batch)", file=sys.stderr)


def _print_events(
    url: str, response: http.client.HTTPResponse, sock: socket.socket | None, timeout_s: float
) -> None:
    """Each Server-Sent Event's data as a line, as it arrives, until the final one."""
    deadline = time.monotonic() + timeout_s
    for data in _events(response, sock, deadline):
        event = _decoded(data)
        print(pretty(data.decode(errors="replace")), flush=True)
        if isinstance(event, dict) and event.get("done") is True:
            if "error" in event or event.get("success") is False:
                message = event.get("error", event.get("message"))
                raise TransportError(f"{url}: the job failed: {message}")
            response.read()  # the stream's end: the connection serves the next job
            return
    raise TransportError(f"{url}: the stream ended before its final event")


def _events(
    response: http.client.HTTPResponse, sock: socket.socket | None, deadline: float
) -> Iterator[bytes]:
    """The ``data`` of each event (its ``data:`` lines joined), as each completes."""
    lines: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if sock is not None:
            sock.settimeout(left)
        line = response.readline()
        if not line:
            return
        line = line.rstrip(b"\r\n")
        if not line:
            if lines:
                yield b"\n".join(lines)
            lines = []
        elif line.startswith(b"data:"):
            lines.append(line[5:].removeprefix(b" "))


# -- WebSocket ------------------------------------------------------------------------------
def _ws(url: str, packets: Sequence[AIOSPacket], token: str | None, timeout_s: float) -> int:
    from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        ws = connect(url, open_timeout=timeout_s, close_timeout=1, additional_headers=headers)
    except InvalidURI:
        raise ConfigError(f"--ws: not a ws(s) URL: {url!r} (e.g. ws://127.0.0.1:18002)") from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        message = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
        raise _refusal(url, status, message, token) from None
    except OSError as exc:
        raise _unreachable(url, exc, timeout_s, _HINTS["ws"]) from None
    with ws:
        try:
            return _ws_jobs(url, ws, packets, timeout_s)
        except ConnectionClosed as exc:
            raise TransportError(f"{url} closed the connection: {exc}") from None
        except OSError as exc:
            raise _unreachable(url, exc, timeout_s, _HINTS["ws"]) from None


def _ws_jobs(url: str, ws: Any, packets: Sequence[AIOSPacket], timeout_s: float) -> int:
    """Send every job and then a ``connect`` for the session: the server answers a
    connection's messages in order, so its ``connected`` reply comes after the last job's
    outputs (however many). Each job has ``timeout_s`` to end (output, error, held)."""
    for packet in packets:
        job = {"session_id": packet.session_id, "seq_no": packet.seq_no, "data": packet.data}
        ws.send(json.dumps({**job, "ts": packet.ts}))
    session = packets[0].session_id if packets else uuid.uuid4().hex
    ws.send(json.dumps({"session_id": session, "connect": True}))
    fence = {"session_id": session, "connected": True}
    code, deadline = 0, time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransportError(f"{url}: a job did not end within {timeout_s:g}s (--timeout-s)")
        try:
            raw = ws.recv(timeout=left)
        except TimeoutError:
            continue
        text = raw if isinstance(raw, str) else raw.decode(errors="replace")
        message = _decoded(text.encode())
        if message == fence:
            return code
        print(pretty(text), flush=True)
        if isinstance(message, dict) and {"output", "error", "held", "queued"} & message.keys():
            deadline = time.monotonic() + timeout_s  # a job ended: the next one's turn
            if "error" in message:
                print(f"error: {url}: {message['error']}", file=sys.stderr)
                code = 1


# -- gRPC -----------------------------------------------------------------------------------
def _grpc(
    target: str,
    packets: Sequence[AIOSPacket],
    block_id: str,
    token: str | None,
    timeout_s: float,
) -> int:
    """``InferenceProxy.infer`` per packet (``x-service-name``: the block id); the server
    enqueues it. Prints what it answered; a refusal or an RPC error raises."""
    import grpc

    from ._proto import inference_proxy_pb2 as pb

    metadata = [("x-service-name", block_id)]
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    channel = grpc.insecure_channel(target)
    infer = channel.unary_unary(
        "/InferenceProxy/infer",
        request_serializer=pb.InferenceMessage.SerializeToString,
        response_deserializer=pb.InferenceRespose.FromString,
    )
    try:
        for packet in packets:
            request = pb.InferenceMessage(rpc_data=packet.SerializeToString())
            try:
                reply = infer(request, timeout=timeout_s, metadata=metadata)
            except grpc.RpcError as exc:
                code = exc.code()
                name = code.name if code is not None else "UNKNOWN"
                hint = ""
                if code == grpc.StatusCode.UNAVAILABLE:
                    hint = "; is the block running with AIOS_GRPC_PORT set?"
                raise TransportError(f"gRPC {target}: {name}: {exc.details()}{hint}") from None
            ids = {"session_id": packet.session_id, "seq_no": packet.seq_no}
            print(json.dumps({**ids, "message": reply.message}), flush=True)
            if not reply.message:
                raise TransportError(f"gRPC {target} refused the packet (message: false)")
    finally:
        channel.close()
    return 0
