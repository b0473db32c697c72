"""The CLI's state file: one embedded redis-server shared by every ``aios-instance`` command
started in the same folder.

The first ``run`` with no Redis configured starts the server and records
``{"url", "redis_pid", "dir", "users": {pid: block_id}}`` in the state file (``--state-file``,
default: per user and folder in the temp directory); later commands attach to it (adding
their PID), and the last one to detach stops the server and removes the file. A PID that is
no longer alive is ignored, so a crashed process never keeps the server, nor the file, alive.
Reads and updates happen under an exclusive lock (``<file>.lock``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import _json
from .embedded import EmbeddedRedis, stop_server
from .errors import ConfigError
from .settings import Settings

__all__ = ["Shared", "attach", "client_settings", "detach", "read_state", "state_file"]


def state_file(explicit: str | None = None, folder: Path | None = None) -> Path:
    """``--state-file``, else one per user and folder (``$TMPDIR/aios-instance-<uid>/``):
    ``folder``'s, by default the current directory's."""
    if explicit:
        return Path(explicit)
    where = str(folder.resolve()) if folder is not None else os.getcwd()
    name = hashlib.sha256(where.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"aios-instance-{os.getuid()}" / f"{name}.json"


@dataclass(frozen=True)
class Shared:
    """The embedded Redis a command attached to; ``started`` when this process started it."""

    url: str
    path: Path
    started: bool


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _load(path: Path) -> dict[str, Any] | None:
    """The file's state with its dead users dropped (``pid`` is the old format's one user)."""
    try:
        state = _json.loads(path.read_text())
        users = dict(state.get("users") or {})
        if "pid" in state:
            users.setdefault(str(state["pid"]), state.get("block_id"))
        state["users"] = {p: b for p, b in users.items() if _alive(int(p))}
        str(state["url"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return state if isinstance(state, dict) else None


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 0), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except (OSError, TypeError):
        return False


def _write(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(_json.dumps(state))
    tmp.replace(path)  # readers never see a half-written file


def attach(path: Path, block_id: str | None, *, binary: str | None = None) -> Shared:
    """Join the folder's embedded Redis, starting one when there is none (or it is gone)."""
    with _locked(path):
        state = _load(path)
        started = state is None or not _answers(state["url"])
        if state is None or started:
            server = EmbeddedRedis(binary=binary).start()
            state = {"url": server.url, "redis_pid": server.pid, "dir": server.directory}
            state["users"] = {}
            server.detach()  # it outlives this process when others still use it
        state["users"][str(os.getpid())] = block_id
        _write(path, state)
        return Shared(state["url"], path, started)


def detach(path: Path) -> bool:
    """Leave the folder's embedded Redis; the last user stops it. True if it was stopped."""
    with _locked(path):
        state = _load(path)
        if state is None:
            return False
        state["users"].pop(str(os.getpid()), None)
        if state["users"]:
            _write(path, state)
            return False
        path.unlink(missing_ok=True)
    if state.get("redis_pid"):
        stop_server(int(state["redis_pid"]), state.get("dir"))
    return True


def read_state(path: Path, *, join: bool = False) -> dict[str, Any] | None:
    """The recorded state, or None when there is none or no process uses it any more.
    ``join``: count this process as a user too (it must :func:`detach` when done), so the
    server outlives the ``run`` that started it while, e.g., a ``tail`` still reads."""
    with _locked(path):
        state = _load(path)
        if state is None or not state["users"]:
            return None
        if join:
            _write(path, {**state, "users": {**state["users"], str(os.getpid()): None}})
    return state


def client_settings(
    settings: Settings, explicit: str | None = None, *, needs_block: bool = True, join: bool = False
) -> Settings:
    """For send/tail/dead: the configured Redis, else the folder's embedded one (``join``:
    as one of its users). The block id defaults to the running block's when exactly one
    block runs there (several: an error when the command ``needs_block``)."""
    if settings.redis_configured:
        return settings
    path = state_file(explicit)
    state = read_state(path, join=join)
    if state is None:
        raise ConfigError(
            "no Redis configured and no `aios-instance run` with an embedded Redis found "
            f"for this folder ({path}); start one with `aios-instance run FILE.py:Class` "
            "here, or pass --redis URL or set AIOS_REDIS_URL"
        )
    block_id = settings.block_id
    if not settings.block_id_configured:
        blocks = sorted({b for b in state["users"].values() if b})
        if len(blocks) > 1 and needs_block:
            raise ConfigError(f"blocks {', '.join(blocks)} run here: pass --block-id")
        block_id = blocks[0] if len(blocks) == 1 else block_id
    return settings.with_overrides(redis_url_override=state["url"], block_id=block_id)
