"""The CLI's state file: how ``aios-instance run`` tells ``send``, ``tail`` and ``dead`` in
another shell where its embedded redis-server listens.

``run`` writes ``{"url", "block_id", "pid", "redis_pid"}`` to ``--state-file`` (default: a
per-user file in the temp directory) when it starts an embedded Redis and removes it on exit;
the other commands use it when no Redis is configured, and ignore it once its ``run`` is gone.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from . import _json
from .errors import ConfigError
from .settings import Settings

__all__ = ["client_settings", "read_state", "remove_state", "state_file", "write_state"]


def state_file(explicit: str | None = None) -> Path:
    """Where ``run`` records its embedded Redis: ``--state-file``, else per user and machine."""
    if explicit:
        return Path(explicit)
    return Path(tempfile.gettempdir()) / f"aios-instance-{os.getuid()}" / "embedded.json"


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Record ``state`` (the URL, block id and pids) atomically, readable by this user only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(_json.dumps(state))
    tmp.replace(path)  # readers never see a half-written file


def remove_state(path: Path) -> None:
    """Remove the state file if it is still ours (another `run` may have taken it over)."""
    state = read_state(path)
    if state is None or state.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def read_state(path: Path) -> dict[str, Any] | None:
    """The recorded state, or None when there is none or its ``run`` is no longer alive."""
    try:
        state = _json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)  # the recording `run` must still be alive
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if isinstance(state, dict) else None


def client_settings(settings: Settings, explicit: str | None = None) -> Settings:
    """For send/tail/dead: the configured Redis, else the embedded one a running ``run``
    recorded (in ``explicit``, the ``--state-file``, or the default place)."""
    if settings.redis_configured:
        return settings
    state = read_state(state_file(explicit))
    if state is None:
        raise ConfigError(
            "no Redis configured and no `aios-instance run` with an embedded Redis found; "
            "pass --redis URL or set AIOS_REDIS_URL"
        )
    block_id = settings.block_id if settings.block_id_configured else state.get("block_id")
    return settings.with_overrides(redis_url_override=state["url"], block_id=block_id)
