"""``aios-instance send`` and ``tail``: push jobs to a list (and wait for their outputs),
print the packets of a list (popping them, or with ``--peek`` leaving them)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from . import _json, keys
from ._urls import DEFAULT_PORT
from .errors import ConfigError, PacketDecodeError
from .packet import AIOSPacket, decode_packet, make_packet

__all__ = ["as_bytes", "describe", "packets", "pretty", "send", "tail"]


def packets(args: argparse.Namespace, output_ptr: Any = "") -> list[AIOSPacket]:
    """The ``--count`` packets ``send`` sends: ``--data``, ``--file``s, one session
    (``--session`` or a random one), seq_no counting up from ``--seq``."""
    try:
        data = _json.loads(args.data) if args.data is not None else None
    except ValueError as exc:
        raise ConfigError(f"--data is not valid JSON: {exc}") from None
    try:
        files = [({"filename": Path(p).name}, Path(p).read_bytes()) for p in args.file or ()]
    except OSError as exc:
        raise ConfigError(f"--file: cannot read {exc.filename}: {exc.strerror}") from None
    session = args.session or uuid.uuid4().hex  # one session; seq_no counts the copies
    return [
        make_packet(
            data, files=files, session_id=session, seq_no=args.seq + i, output_ptr=output_ptr
        )
        for i in range(args.count)
    ]


def send(args: argparse.Namespace, client: Any, block_id: str) -> int:
    """Push ``--count`` packets; with ``--wait``, print each output as it arrives."""
    reply = keys.reply(uuid.uuid4().hex) if args.wait else None
    output_ptr = _output_ptr(args.output_ptr, client, reply)
    queue = args.to or keys.inputs(block_id)
    built = packets(args, output_ptr)
    session = built[0].session_id if built else ""
    sent = []
    for packet in built:
        sent.append(packet.SerializeToString())
        client.lpush(queue, sent[-1])
    if not reply:
        print(f"sent {args.count} packet(s) to {queue}")
        return 0
    dead = keys.dead_letters(block_id)
    try:
        code = _await_replies(client, reply, dead, session, args.count, args.timeout)
    finally:
        client.delete(reply)
    if code == 2:  # timed out
        _withdraw(client, queue, sent)
        return 1
    return code


def _output_ptr(given: str | None, client: Any, reply: str | None) -> Any:
    """The packets' output_ptr: ``--output-ptr``; with ``--wait``, a graph's ``final`` is
    the reply list (a direct pointer cannot be followed, so it is refused)."""
    if reply is None:
        return given or ""
    kw = client.connection_pool.connection_kwargs
    host, port = kw.get("host", "localhost"), kw.get("port", DEFAULT_PORT)
    node = {"outputs": [{"host": host, "port": port, "queue_name": reply}]}
    if not given:
        return node
    try:
        pointer = _json.loads(given)
    except ValueError as exc:
        raise ConfigError(f"--output-ptr is not valid JSON: {exc}") from None
    if not (isinstance(pointer, dict) and pointer.get("is_graph") is True):
        raise ConfigError(
            "--wait follows only a graph --output-ptr (it sets the graph's final output); "
            "for a direct pointer, send without --wait and `aios-instance tail` its list"
        )
    graph = pointer.get("graph")
    if not isinstance(graph, dict):
        raise ConfigError("--output-ptr: a graph needs a 'graph' object")
    return {**pointer, "graph": {**graph, "final": node}}


def _withdraw(client: Any, queue: str, sent: list[bytes]) -> None:
    """After a timeout: take back the jobs still queued, say which were left."""
    removed = sum(int(client.lrem(queue, 1, raw)) for raw in sent)
    if removed:
        print(f"removed {removed} unanswered job(s) still queued in {queue}", file=sys.stderr)
    if removed < len(sent):
        print(
            f"{len(sent) - removed} job(s) were no longer in {queue} (taken by a block "
            "or answered): any further output goes to a reply list that is now deleted",
            file=sys.stderr,
        )


def _dead_letter_of(client: Any, dead: str, session: str) -> dict[str, Any] | None:
    """The newest dead-letter record of ``session`` among the latest ones, if any."""
    for raw in client.lrange(dead, 0, 99):
        try:
            record = _json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("session_id") == session:
            return record
    return None


def _await_replies(
    client: Any, reply: str, dead: str, session: str, count: int, timeout_s: float
) -> int:
    """Print each output as it arrives; a job dead-lettered instead ends the wait at once
    (1). Returns 2 on a timeout."""
    deadline = time.monotonic() + timeout_s
    received = 0
    while received < count:
        left = deadline - time.monotonic()
        if left <= 0:
            message = f"no output within {timeout_s:g}s (is the block running?)"
            print(f"error: {message}", file=sys.stderr)
            return 2
        item = client.brpop([reply], timeout=min(max(left, 0.01), 0.25))
        if item is not None:
            print(pretty(decode_packet(as_bytes(item[1])).data), flush=True)
            received += 1
            continue
        record = _dead_letter_of(client, dead, session)
        if record is not None:
            why = f"({record.get('outcome')}): {record.get('reason')}"
            print(f"error: the job was dead-lettered {why}", file=sys.stderr)
            return 1
    return 0


def tail(args: argparse.Namespace, client: Any) -> int:
    """Pop and print packets as they arrive; ``--peek`` prints what is there, popping none."""
    if args.peek:
        first = 0 if args.count is None else -max(args.count, 1)  # the oldest are at the end
        for raw in client.lrange(args.queue, first, -1)[::-1]:
            print(describe(as_bytes(raw)), flush=True)
        return 0
    seen = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while args.count is None or seen < args.count:
        wait = 1.0 if deadline is None else deadline - time.monotonic()
        if wait <= 0:
            break
        item = client.brpop([args.queue], timeout=min(max(wait, 0.01), 1.0))  # 0 = forever
        if item is not None:
            print(describe(as_bytes(item[1])), flush=True)
            seen += 1
    return 0


def pretty(data: str) -> str:
    """Output data as the stdlib prints JSON (``{"value": 0.7, "passed": true}``)."""
    try:
        return json.dumps(_json.loads(data)) if data else ""
    except ValueError:
        return data


def as_bytes(value: bytes | str) -> bytes:
    """A Redis reply as bytes."""
    return value if isinstance(value, bytes) else value.encode()


def describe(raw: bytes) -> str:
    """A packet as one JSON line (session_id, seq_no, ts, data, number of files)."""
    try:
        packet = decode_packet(raw)
    except PacketDecodeError as exc:
        return _json.dumps({"error": exc.message, "bytes": len(raw)})
    try:
        data: Any = _json.loads(packet.data) if packet.data else None
    except ValueError:
        data = packet.data
    fields = {"session_id": packet.session_id, "seq_no": packet.seq_no, "ts": packet.ts}
    return _json.dumps({**fields, "data": data, "files": len(packet.files)})
