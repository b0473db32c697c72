"""``aios-instance``: run a block, send it jobs, watch lists, inspect dead letters.

    aios-instance run my_block.py:MyBlock [--block-data block.json] [--redis URL] [--block-id ID]
    aios-instance send --data '{"value": 0.7}' --wait
    aios-instance tail OUTPUT
    aios-instance dead list | show N | replay [N ...] | replay --all

With no Redis configured, ``run`` starts an embedded redis-server on a free loopback port and
records its URL in a small state file (``--state-file``), so ``send``/``tail``/``dead`` in
another shell find it. ``--redis``, ``--block-id`` and ``--state-file`` go before or after the
command. See docs/cli.md. The parser is in ``_cli_parser.py``, the state file in
``_cli_state.py``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from . import _json, keys
from ._cli_parser import parser
from ._cli_state import client_settings, remove_state, state_file, write_state
from ._urls import DEFAULT_PORT
from .errors import AIOSError, ConfigError, PacketDecodeError
from .packet import decode_packet, make_packet
from .runtime.deadletter import record_packets
from .settings import Settings

__all__ = ["load_block_class", "main"]

log = logging.getLogger("aios_instance.cli")


def load_block_class(spec: str) -> type[Any]:
    """Load ``path/to/file.py:Class`` or ``package.module:Class``."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ConfigError(f"block must be given as FILE.py:Class or module:Class, got {spec!r}")
    if target.endswith(".py") or os.sep in target:
        path = Path(target).resolve()
        if not path.exists():
            raise ConfigError(f"block file not found: {path}")
        module_name = f"aios_block_{path.stem}_{abs(hash(str(path)))}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ConfigError(f"cannot import {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        sys.path.insert(0, str(path.parent))  # the block's sibling modules import as usual
        loader_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"{target} defines no class {name!r}")
    return cls


# -- run ------------------------------------------------------------------------------------
def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from .blockdata import load_block_data
    from .runtime.block import Block

    block_class = load_block_class(args.block)
    # Block data first: a missing file or BlocksDB fails before anything is started.
    block_data = load_block_data(
        settings.block_id,
        file=settings.block_data_file,
        blocks_db_uri=settings.blocks_db_uri,
        custom_init_data=settings.custom_init_data,
    )
    if settings.redis_configured:
        _serve(Block(block_class, settings, block_data=block_data), settings)
        return 0
    from .embedded import EmbeddedRedis

    state_path = state_file(args.state_file)
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)  # until Block.run takes over
    embedded = EmbeddedRedis(binary=settings.redis_server_binary).start()
    try:
        settings = settings.with_overrides(redis_url_override=embedded.url)
        state = {"url": embedded.url, "block_id": settings.block_id, "pid": os.getpid()}
        write_state(state_path, {**state, "redis_pid": embedded.pid})
        print(f"embedded redis-server at {embedded.url}", flush=True)
        _serve(Block(block_class, settings, block_data=block_data), settings)
    finally:
        signal.signal(signal.SIGTERM, previous)
        remove_state(state_path)
        embedded.stop()
    return 0


def _serve(block: Any, settings: Settings) -> None:
    inputs = keys.inputs(settings.block_id)
    print(f"serving block {settings.block_id} (input list {inputs})", flush=True)
    block.run()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM before the block serves (e.g. while its model loads): unwind, so the embedded
    Redis is stopped rather than orphaned."""
    raise SystemExit(128 + signum)


# -- send / tail ----------------------------------------------------------------------------
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


def _cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from .transport.redis import connect

    settings = client_settings(settings, args.state_file)
    client = connect(settings.redis_url, socket_timeout_s=args.timeout + 5)
    try:
        data = _json.loads(args.data) if args.data is not None else None
    except ValueError as exc:
        raise ConfigError(f"--data is not valid JSON: {exc}") from None
    files = [({"filename": Path(p).name}, Path(p).read_bytes()) for p in args.file or ()]
    reply = keys.reply(uuid.uuid4().hex) if args.wait else None
    output_ptr: Any = args.output_ptr or ""
    if reply:
        kw = client.connection_pool.connection_kwargs
        host, port = kw.get("host", "localhost"), kw.get("port", DEFAULT_PORT)
        output_ptr = {"outputs": [{"host": host, "port": port, "queue_name": reply}]}
    queue = args.to or keys.inputs(settings.block_id)
    session = args.session or uuid.uuid4().hex  # one session; seq_no counts the copies
    for i in range(args.count):
        packet = make_packet(
            data, files=files, session_id=session, seq_no=args.seq + i, output_ptr=output_ptr
        )
        client.lpush(queue, packet.SerializeToString())
    if not reply:
        print(f"sent {args.count} packet(s) to {queue}")
        return 0
    dead = keys.dead_letters(settings.block_id)
    try:
        return _await_replies(client, reply, dead, session, args.count, args.timeout)
    finally:
        client.delete(reply)


def _await_replies(
    client: Any, reply: str, dead: str, session: str, count: int, timeout_s: float
) -> int:
    """Print each output as it arrives; a job dead-lettered instead ends the wait at once."""
    deadline = time.monotonic() + timeout_s
    received = 0
    while received < count:
        left = deadline - time.monotonic()
        if left <= 0:
            message = f"no output within {timeout_s:g}s (is the block running?)"
            print(f"error: {message}", file=sys.stderr)
            return 1
        item = client.brpop([reply], timeout=min(max(left, 0.01), 0.25))
        if item is not None:
            print(_pretty(decode_packet(_b(item[1])).data), flush=True)
            received += 1
            continue
        record = _dead_letter_of(client, dead, session)
        if record is not None:
            why = f"({record.get('outcome')}): {record.get('reason')}"
            print(f"error: the job was dead-lettered {why}", file=sys.stderr)
            return 1
    return 0


def _cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from .transport.redis import connect

    settings = client_settings(settings, args.state_file)
    client = connect(settings.redis_url, socket_timeout_s=max(args.timeout, 1.0) + 5)
    seen = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while args.count is None or seen < args.count:
        wait = 1.0 if deadline is None else deadline - time.monotonic()
        if wait <= 0:
            break
        item = client.brpop([args.queue], timeout=min(max(wait, 0.01), 1.0))  # 0 = forever
        if item is not None:
            print(_describe(_b(item[1])), flush=True)
            seen += 1
    return 0


def _pretty(data: str) -> str:
    """Output data as the stdlib prints JSON (``{"value": 0.7, "passed": true}``)."""
    try:
        return json.dumps(_json.loads(data)) if data else ""
    except ValueError:
        return data


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _describe(raw: bytes) -> str:
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


# -- dead letters ---------------------------------------------------------------------------
def _cmd_dead(args: argparse.Namespace, settings: Settings) -> int:
    from .transport.redis import connect

    settings = client_settings(settings, args.state_file)
    client = connect(settings.redis_url)
    dead_key = keys.dead_letters(settings.block_id)
    records = [_b(r) for r in client.lrange(dead_key, 0, -1)[::-1]]  # oldest first
    if args.action == "list":
        for i, raw in enumerate(records):
            rec = _parse_record(raw)
            job = f"{rec.get('session_id')}:{rec.get('seq_no')}"
            print(f"{i}\t{rec.get('outcome')}\t{rec.get('stage')}\t{job}\t{rec.get('reason')}")
        print(f"{len(records)} dead letter(s) in {dead_key}", file=sys.stderr)
        return 0
    picks = _pick(records, args.indexes, every=args.action == "replay" and args.all)
    if args.action == "show":
        for i in picks:
            rec = _parse_record(records[i])
            decoded = [_json.loads(_describe(p)) for p in record_packets(rec)]
            print(_json.dumps({**rec, "decoded": decoded}))
        return 0
    replayed, used = 0, 0
    for i in picks:
        packets = record_packets(_parse_record(records[i]))
        if not packets:
            print(f"skipped dead letter {i}: it holds no packet", file=sys.stderr)
            continue
        pipe = client.pipeline(transaction=True)
        pipe.lpush(keys.inputs(settings.block_id), *packets)
        pipe.lrem(dead_key, 1, records[i])  # type: ignore[arg-type]  # redis-py accepts bytes
        pipe.execute()
        replayed, used = replayed + len(packets), used + 1
    print(f"replayed {replayed} packet(s) from {used} record(s)")
    return 0


def _parse_record(raw: bytes) -> dict[str, Any]:
    """A dead-letter record; something else pushed to the list shows as unreadable."""
    try:
        rec = _json.loads(raw)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        return {"outcome": "?", "stage": "?", "reason": f"not a dead-letter record: {raw[:80]!r}"}
    return rec


def _pick(records: Sequence[bytes], indexes: Sequence[int], *, every: bool) -> list[int]:
    if every:
        return list(range(len(records)))
    if not indexes:
        raise ConfigError("name the dead letters by index (see `aios-instance dead list`)")
    bad = [i for i in indexes if not 0 <= i < len(records)]
    if bad:
        raise ConfigError(f"no dead letter at index {bad[0]} (there are {len(records)})")
    return list(indexes)


_COMMANDS = {"run": _cmd_run, "send": _cmd_send, "tail": _cmd_tail, "dead": _cmd_dead}


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env(
            block_id=args.block_id,
            redis_url_override=args.redis,
            block_data_file=getattr(args, "block_data", None),
        )
        if "AIOS_CONTROL_BIND" not in settings.configured:
            settings = settings.with_overrides(control_bind="127.0.0.1")  # dev: loopback only
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return _COMMANDS[args.command](args, settings)
    except AIOSError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, not a traceback, for anything unexpected
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
