"""``aios-instance dev graph.yaml``: several blocks of a chain with one command and one Redis.

The YAML names the blocks and wires them (docs/cli.md#dev)::

    blocks:
      - {id: tok, run: chain.py:Tokenizer}
      - {id: count, run: chain.py:Counter, data: {parameters: {min_length: 3}}}
    graph:
      tok: [count]

Each block is an ``aios-instance run`` child process in the YAML's folder, on the folder's
shared embedded Redis (or the configured one), with its own free control and metrics ports.
The graph becomes an ``output_ptr`` (written next to the YAML as ``<name>.ptr.json``); a block
with exactly one successor also gets it as its default output. SIGTERM/SIGINT stop them all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from . import keys
from ._cli_state import attach, detach, state_file
from ._urls import DEFAULT_PORT
from .embedded import free_port
from .errors import ConfigError
from .settings import Settings

__all__ = ["DevBlock", "load_graph", "output_ptr", "run_dev"]

_ID = "[A-Za-z0-9_.-]+"


@dataclass(frozen=True)
class DevBlock:
    """One block of a dev graph: its id, ``run`` spec, block data and successors."""

    id: str
    run: str
    data: dict[str, Any] = field(default_factory=dict)
    next: tuple[str, ...] = ()


def load_graph(path: Path) -> list[DevBlock]:
    """The blocks of a dev graph file, checked (ConfigError naming the file and the entry)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("blocks"), list) or not doc["blocks"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'blocks' list")
    wiring = doc.get("graph") or {}
    if not isinstance(wiring, dict):
        raise ConfigError(f"{path}: 'graph' must map a block id to a list of block ids")
    blocks = [_block(path, i, entry, wiring) for i, entry in enumerate(doc["blocks"])]
    ids = [b.id for b in blocks]
    if len(set(ids)) < len(ids):
        raise ConfigError(f"{path}: block ids must be unique, got {ids}")
    unknown = sorted({str(x) for x in [*wiring, *(n for b in blocks for n in b.next)]} - set(ids))
    if unknown:
        raise ConfigError(f"{path}: 'graph' names blocks that are not in 'blocks': {unknown}")
    return blocks


def _block(path: Path, i: int, entry: object, wiring: dict[Any, Any]) -> DevBlock:
    where = f"{path}: blocks[{i}]"
    if not isinstance(entry, dict) or not entry.get("id") or not entry.get("run"):
        raise ConfigError(f"{where}: needs 'id' and 'run' (FILE.py:Class or module:Class)")
    block_id, data = str(entry["id"]), entry.get("data") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: 'data' must be a mapping (the block-data document)")
    successors = wiring.get(block_id) or []
    if isinstance(successors, str):
        successors = [successors]
    if not isinstance(successors, list):
        raise ConfigError(f"{path}: graph[{block_id!r}] must be a list of block ids")
    return DevBlock(block_id, str(entry["run"]), data, tuple(str(s) for s in successors))


def output_ptr(blocks: list[DevBlock], redis_url: str) -> dict[str, Any]:
    """The graph as an ``output_ptr``: each block with successors gets its node; the others
    use ``final`` (the default output here; ``send --wait`` replaces it with its reply list)."""
    parts = urlsplit(redis_url)
    host, port = parts.hostname or "localhost", parts.port or DEFAULT_PORT
    db = int(parts.path.strip("/") or 0)

    def out(queue: str) -> dict[str, Any]:
        return {"host": host, "port": port, "db": db, "queue_name": queue}

    graph: dict[str, Any] = {
        b.id: {"outputs": [out(keys.inputs(n)) for n in b.next]} for b in blocks if b.next
    }
    graph["final"] = {"outputs": [out(keys.DEFAULT_OUTPUT)]}
    return {"is_graph": True, "graph": graph}


def _env(block: DevBlock, redis_url: str | None, state: Path) -> dict[str, str]:
    env = dict(os.environ, BLOCK_ID=block.id, MGMT_PORT=str(free_port()))
    env["METRICS_PORT"] = str(free_port())
    env["AIOS_WS_PORT"] = str(free_port())
    if redis_url:
        env["AIOS_REDIS_URL"] = redis_url
    if block.data:
        env["CUSTOM_INIT_DATA"] = json.dumps(block.data)
    if len(block.next) == 1:
        env["AIOS_DEFAULT_OUTPUT"] = keys.inputs(block.next[0])
    return env


def run_dev(graph_file: str, settings: Settings, explicit_state: str | None) -> int:
    """Start every block, print where each is, stop them all on SIGTERM/SIGINT (exit 0);
    exit 1 when a block exits by itself (the others are stopped)."""
    path = Path(graph_file).resolve()
    blocks = load_graph(path)
    state = state_file(explicit_state, path.parent)
    shared = None if settings.redis_configured else attach(state, None)
    try:
        url = settings.redis_url if shared is None else shared.url
        pointer = path.with_name(f"{path.stem}.ptr.json")
        pointer.write_text(json.dumps(output_ptr(blocks, url)) + "\n")
        print(f"redis at {url}; graph output_ptr in {pointer.name}", flush=True)
        return _supervise(blocks, path.parent, url if shared is None else None, state)
    finally:
        if shared is not None:
            detach(state)


def _supervise(blocks: list[DevBlock], folder: Path, url: str | None, state: Path) -> int:
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for block in blocks:
            env = _env(block, url, state)
            cmd = [
                sys.executable,
                "-m",
                "aios_instance",
                "run",
                block.run,
                "--state-file",
                str(state),
            ]
            procs.append(subprocess.Popen(cmd, cwd=folder, env=env))
            control, metrics = env["MGMT_PORT"], env["METRICS_PORT"]
            print(f"block {block.id}: {block.run}, control port {control}, metrics port {metrics}")
        print(f"{len(procs)} block(s) started; Ctrl-C stops them all", flush=True)
        while not stop.wait(0.2):
            gone = [
                (b, p.returncode)
                for b, p in zip(blocks, procs, strict=False)
                if p.poll() is not None
            ]
            if gone:
                block, code = gone[0]
                message = f"error: block {block.id} exited with {code}; stopping the others"
                print(message, file=sys.stderr)
                return 1
        return 0
    finally:
        _stop_all(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_all(procs: list[subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    """SIGTERM every block (they drain), then wait; SIGKILL one that does not exit."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
