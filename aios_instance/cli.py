"""``aios-instance``: run a block (or a chain of them), send it jobs, watch lists, inspect
dead letters.

    aios-instance run my_block.py:MyBlock [--block-data block.json] [--redis URL] [--block-id ID]
    aios-instance dev graph.yaml
    aios-instance send --data '{"value": 0.7}' --wait
    aios-instance send --data '{"value": 0.7}' --http http://127.0.0.1:18001/infer [--stream]
    aios-instance tail OUTPUT [--peek]
    aios-instance dead list | show N | replay [N ...] | replay --all

With no Redis configured, the commands started in one folder share one embedded redis-server
(the first ``run`` starts it, the last one stops it; ``_cli_state.py``). ``--redis``,
``--block-id`` and ``--state-file`` go before or after the command. See docs/cli.md. The
parser is in ``_cli_parser.py``, send and tail in ``_cli_send.py``, send to an ingest
(``--http``, ``--ws``, ``--grpc``) in ``_cli_ingest.py``, dev in ``_cli_dev.py``, Redis
errors in ``_cli_redis.py``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from . import _json, keys
from ._cli_dev import run_dev
from ._cli_ingest import check_ingest_options, send_ingest
from ._cli_parser import parser
from ._cli_redis import checked_client, normalise_flag, origin
from ._cli_send import as_bytes, describe, packets, send, tail
from ._cli_state import attach, client_settings, detach, state_file
from .embedded import free_port
from .errors import AIOSError, ConfigError
from .runtime.deadletter import record_packets
from .settings import Settings
from .transport.redis import connect

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
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())  # like uvicorn: `run chain:Tokenizer` from its folder
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
        try:
            _serve(Block(block_class, settings, block_data=block_data), settings)
        except AIOSError:  # the runtime waited for its Redis (AIOS_STARTUP_TIMEOUT_S) and failed:
            url = settings.redis_url  # if Redis is down, say where the URL came from instead
            checked_client(connect(url), url, origin(args.redis, settings)).close()
            raise
        return 0
    state_path = state_file(args.state_file)
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)  # until Block.run takes over
    shared = attach(state_path, settings.block_id, binary=settings.redis_server_binary)
    try:
        settings = settings.with_overrides(redis_url_override=shared.url)
        settings = _free_ports(settings, defaults_free=shared.started)
        how = "embedded" if shared.started else "sharing the embedded"
        print(f"{how} redis-server at {shared.url}", flush=True)
        _serve(Block(block_class, settings, block_data=block_data), settings)
    finally:
        signal.signal(signal.SIGTERM, previous)
        detach(state_path)
    return 0


def _free_ports(settings: Settings, *, defaults_free: bool = True) -> Settings:
    """Dev mode: a default control, metrics or WebSocket port that is taken becomes a free
    one. Only the run that started the folder's Redis tries the defaults (``defaults_free``);
    the others take free ports at once, so two runs started together never race for them."""
    changes: dict[str, int] = {}
    ports = (("MGMT_PORT", "mgmt_port"), ("METRICS_PORT", "metrics_port"))
    for env, name in (*ports, ("AIOS_WS_PORT", "ws_port")):
        port = getattr(settings, name)
        if not port or env in settings.configured:
            continue
        if not defaults_free or not _bindable(settings.control_bind, port):
            changes[name] = free_port()
    return settings.with_overrides(**changes)


def _bindable(host: str, port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.bind((host, port))
    except OSError:
        return False
    return True


def _serve(block: Any, settings: Settings) -> None:
    def serving(runtime: Any) -> None:  # printed once it serves, not before the block is built
        inputs = keys.inputs(settings.block_id)
        control = f"control port {runtime.control_port or 'off'}"
        metrics = f"metrics port {settings.metrics_port or 'off'}"
        ws = f"WebSocket port {runtime.ingress.ws_port or 'off'}"
        ports = f"{control}, {metrics}, {ws}"
        print(f"serving block {settings.block_id} (input list {inputs}; {ports})")
        sys.stdout.flush()

    block.run(on_serving=serving)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM before the block serves (e.g. while its model loads): unwind, so the embedded
    Redis is stopped rather than orphaned."""
    raise SystemExit(128 + signum)


# -- send / tail ----------------------------------------------------------------------------
def _client(
    args: argparse.Namespace, settings: Settings, timeout_s: float = 5.0, needs_block: bool = True
) -> Any:
    """The settings for a client command (the folder's embedded Redis unless one is
    configured) and a client that answered PING."""
    source = origin(args.redis, settings, state_file(args.state_file))
    settings = client_settings(settings, args.state_file, needs_block=needs_block, join=True)
    url = settings.redis_url
    return settings, checked_client(connect(url, socket_timeout_s=timeout_s), url, source)


def _cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    if check_ingest_options(args):  # --http, --ws or --grpc: no Redis
        return send_ingest(args, packets(args, args.output_ptr or ""), settings)
    settings, client = _client(args, settings, args.timeout + 5)
    return send(args, client, settings.block_id)


def _cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    _, client = _client(args, settings, max(args.timeout, 1.0) + 5, needs_block=False)
    return tail(args, client)


# -- dead letters ---------------------------------------------------------------------------
def _cmd_dead(args: argparse.Namespace, settings: Settings) -> int:
    settings, client = _client(args, settings)
    dead_key = keys.dead_letters(settings.block_id)
    records = [as_bytes(r) for r in client.lrange(dead_key, 0, -1)[::-1]]  # oldest first
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
            decoded = [_json.loads(describe(p)) for p in record_packets(rec)]
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
        pipe.lrem(dead_key, 1, records[i])
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


def _cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    return run_dev(args.graph, settings, args.state_file)


_COMMANDS = {
    "run": _cmd_run,
    "dev": _cmd_dev,
    "send": _cmd_send,
    "tail": _cmd_tail,
    "dead": _cmd_dead,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    cli = parser(f"aios-instance {metadata.version('aios-instance')}")
    args = cli.parse_args(argv)
    if args.command is None:  # bare `aios-instance`: the help, as a usage error
        cli.print_help(sys.stderr)
        return 2
    try:
        args.redis = normalise_flag(args.redis)
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
        try:
            return _COMMANDS[args.command](args, settings)
        finally:
            if _used_redis(args) and not settings.redis_configured:
                detach(state_file(args.state_file))  # the last user stops the shared Redis
    except AIOSError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, not a traceback, for anything unexpected
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _used_redis(args: argparse.Namespace) -> bool:
    """Whether the command joined the folder's embedded Redis (``send`` to an ingest did not)."""
    if args.command == "send":
        return not (args.http or args.ws or args.grpc)
    return args.command in ("tail", "dead")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
