"""``aios-instance``: run a block, send it jobs, watch lists, inspect dead letters.

    aios-instance run my_block.py:MyBlock [--block-data block.json] [--redis URL] [--block-id ID]
    aios-instance send --data '{"value": 0.7}' --wait
    aios-instance tail OUTPUT
    aios-instance dead list | show N | replay [N ...] | replay --all

With no Redis configured, ``run`` starts an embedded redis-server on a free loopback port and
records its URL in a small state file (``--state-file``), so ``send``/``tail``/``dead`` in
another shell find it. ``--redis``, ``--block-id`` and ``--state-file`` go before or after the
command. See docs/cli.md.
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
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from . import _json, keys
from .errors import AIOSError, ConfigError, PacketDecodeError
from .packet import decode_packet, make_packet
from .runtime.deadletter import record_packets
from .settings import Settings

__all__ = ["load_block_class", "main"]

log = logging.getLogger("aios_instance.cli")


def _state_file(explicit: str | None = None) -> Path:
    """Where ``run`` records its embedded Redis: ``--state-file``, else per user and machine."""
    if explicit:
        return Path(explicit)
    return Path(tempfile.gettempdir()) / f"aios-instance-{os.getuid()}" / "embedded.json"


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
        settings.block_id, file=settings.block_data_file,
        blocks_db_uri=settings.blocks_db_uri, custom_init_data=settings.custom_init_data,
    )  # fmt: skip
    if settings.redis_configured:
        _serve(Block(block_class, settings, block_data=block_data), settings)
        return 0
    from .embedded import EmbeddedRedis

    state_file = _state_file(args.state_file)
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)  # until Block.run takes over
    embedded = EmbeddedRedis(binary=settings.redis_server_binary).start()
    try:
        settings = settings.with_overrides(redis_url_override=embedded.url)
        _write_state(state_file, {"url": embedded.url, "block_id": settings.block_id,
                                  "pid": os.getpid(), "redis_pid": embedded.pid})  # fmt: skip
        print(f"embedded redis-server at {embedded.url}", flush=True)
        _serve(Block(block_class, settings, block_data=block_data), settings)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _remove_state(state_file)
        embedded.stop()
    return 0


def _serve(block: Any, settings: Settings) -> None:
    print(f"serving block {settings.block_id} (input list {keys.inputs(settings.block_id)})",
          flush=True)  # fmt: skip
    block.run()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM before the block serves (e.g. while its model loads): unwind, so the embedded
    Redis is stopped rather than orphaned."""
    raise SystemExit(128 + signum)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(_json.dumps(state))
    tmp.replace(path)  # readers never see a half-written file


def _remove_state(path: Path) -> None:
    """Remove the state file if it is still ours (another `run` may have taken it over)."""
    state = _read_state(path)
    if state is None or state.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = _json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)  # the recording `run` must still be alive
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if isinstance(state, dict) else None


def _client_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """For send/tail/dead: the configured Redis, else a running embedded one."""
    if settings.redis_configured:
        return settings
    state = _read_state(_state_file(args.state_file))
    if state is None:
        raise ConfigError(
            "no Redis configured and no `aios-instance run` with an embedded Redis found; "
            "pass --redis URL or set AIOS_REDIS_URL"
        )
    block_id = settings.block_id if settings.block_id_configured else state.get("block_id")
    return settings.with_overrides(redis_url_override=state["url"], block_id=block_id)


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

    settings = _client_settings(settings, args)
    client = connect(settings.redis_url, socket_timeout_s=args.timeout + 5)
    try:
        data = _json.loads(args.data) if args.data is not None else None
    except ValueError as exc:
        raise ConfigError(f"--data is not valid JSON: {exc}") from None
    files = [({"filename": Path(p).name}, Path(p).read_bytes()) for p in args.file or ()]
    reply = f"aios:reply:{uuid.uuid4().hex}" if args.wait else None
    output_ptr: Any = args.output_ptr or ""
    if reply:
        kw = client.connection_pool.connection_kwargs
        output_ptr = {"outputs": [{"host": kw.get("host", "localhost"),
                                   "port": kw.get("port", 6379), "queue_name": reply}]}  # fmt: skip
    queue = args.to or keys.inputs(settings.block_id)
    session = args.session or uuid.uuid4().hex  # one session; seq_no counts the copies
    for i in range(args.count):
        packet = make_packet(data, files=files, session_id=session, seq_no=args.seq + i,
                             output_ptr=output_ptr)  # fmt: skip
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
            print(f"error: no output within {timeout_s:g}s (is the block running?)",
                  file=sys.stderr)  # fmt: skip
            return 1
        item = client.brpop([reply], timeout=min(max(left, 0.01), 0.25))
        if item is not None:
            print(_pretty(decode_packet(_b(item[1])).data), flush=True)
            received += 1
            continue
        record = _dead_letter_of(client, dead, session)
        if record is not None:
            print(f"error: the job was dead-lettered ({record.get('outcome')}): "
                  f"{record.get('reason')}", file=sys.stderr)  # fmt: skip
            return 1
    return 0


def _cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from .transport.redis import connect

    settings = _client_settings(settings, args)
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
    return _json.dumps({
        "session_id": packet.session_id, "seq_no": packet.seq_no, "ts": packet.ts,
        "data": data, "files": len(packet.files),
    })  # fmt: skip


# -- dead letters ---------------------------------------------------------------------------
def _cmd_dead(args: argparse.Namespace, settings: Settings) -> int:
    from .transport.redis import connect

    settings = _client_settings(settings, args)
    client = connect(settings.redis_url)
    dead_key = keys.dead_letters(settings.block_id)
    records = [_b(r) for r in client.lrange(dead_key, 0, -1)[::-1]]  # oldest first
    if args.action == "list":
        for i, raw in enumerate(records):
            rec = _parse_record(raw)
            print(f"{i}\t{rec.get('outcome')}\t{rec.get('stage')}\t{rec.get('session_id')}:"
                  f"{rec.get('seq_no')}\t{rec.get('reason')}")  # fmt: skip
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


# -- parser ---------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="aios-instance", description="Run AIOS blocks and talk to them over Redis.")
    _add_common(p, None)
    common = _Parser(add_help=False)
    _add_common(common, argparse.SUPPRESS)  # also accepted after the command
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=description, parents=[common])

    run = command("run", "serve a block class", "Serve a block class.")
    run.add_argument("block", help="FILE.py:Class or module:Class")
    run.add_argument("--block-data", help="local JSON/YAML block-data document")

    send = command("send", "send a job to a block", "Send a job.")
    send.add_argument("--data", help="JSON for the packet's data")
    send.add_argument("--file", action="append", help="attach a file (repeatable)")
    send.add_argument("--session", help="session_id (default: random)")
    send.add_argument("--seq", type=int, default=0, help="seq_no (default 0)")
    send.add_argument("--to", help="queue (default: {block_id}_inputs)")
    send.add_argument("--output-ptr", help="output_ptr JSON to put in the packet")
    send.add_argument("--count", type=int, default=1, help="send N copies (seq_no increments)")
    send.add_argument("--wait", action="store_true", help="wait for and print the output")
    send.add_argument("--timeout", type=float, default=10.0, help="--wait limit in seconds")

    tail = command("tail", "print packets from a list as they arrive",
                   "Pop and print packets from a Redis list.")  # fmt: skip
    tail.add_argument("queue")
    tail.add_argument("--count", type=int, help="stop after N packets")
    tail.add_argument("--timeout", type=float, default=0.0, help="stop after S seconds")

    dead = command("dead", "inspect and replay dead letters",
                   "Inspect and replay {block_id}_dead.")  # fmt: skip
    dead.add_argument("action", choices=("list", "show", "replay"))
    dead.add_argument("indexes", nargs="*", type=int, help="record indexes (from `dead list`)")
    dead.add_argument("--all", action="store_true", help="replay every record")
    return p


def _add_common(parser: argparse.ArgumentParser, default: Any) -> None:
    """Options every command takes, before or after the command name."""
    parser.add_argument(
        "--redis",
        default=default,
        help="Redis URL (default: REDIS_*/AIOS_REDIS_URL, else embedded)",
    )
    parser.add_argument(
        "--block-id", default=default, help="block id (default: BLOCK_ID, else 'block')"
    )
    parser.add_argument("--state-file", default=default,
                        help="where `run` records its embedded Redis for the other commands "
                             "(default: a per-user file in the temp directory)")  # fmt: skip


_COMMANDS = {"run": _cmd_run, "send": _cmd_send, "tail": _cmd_tail, "dead": _cmd_dead}


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(
            block_id=args.block_id, redis_url_override=args.redis,
            block_data_file=getattr(args, "block_data", None),
        )  # fmt: skip
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
