"""The embedded Redis shared by one folder's commands: the first user starts it, later ones
attach, the last one stops it; a dead PID (a crashed process) is ignored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from aios_instance._cli_state import attach, client_settings, detach, read_state, state_file
from aios_instance.errors import ConfigError
from aios_instance.settings import Settings
from tests.support import eventually


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, protocol=2, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def _other_user(spawned: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Another live process (it waits on its stdin until the test ends it)."""
    code = "import sys; sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    spawned.append(proc)
    return proc


def _add_user(path: Path, pid: int, block_id: str) -> None:
    state = json.loads(path.read_text())
    state["users"][str(pid)] = block_id
    path.write_text(json.dumps(state))


def test_the_default_state_file_is_per_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    first = state_file()
    assert state_file() == first
    monkeypatch.chdir(tmp_path / "b")
    assert state_file() != first
    assert state_file(str(tmp_path / "x.json")) == tmp_path / "x.json"


def test_the_last_user_stops_the_shared_server(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    path = tmp_path / "state.json"
    first = attach(path, "tok")
    assert first.started and _answers(first.url)
    other = _other_user(spawned)
    _add_user(path, other.pid, "det")
    assert attach(path, "tok") == first.__class__(first.url, path, started=False)
    assert detach(path) is False  # the other process still uses it
    assert _answers(first.url)
    assert read_state(path) is not None
    other.communicate(b"")  # it exits (as if it had crashed: it never detached)
    assert read_state(path) is None  # nobody alive uses it
    again = attach(path, "tok")  # the server still answers: reused, not restarted
    assert (again.url, again.started) == (first.url, False)
    assert detach(path) is True
    assert not path.exists()
    eventually(lambda: not _answers(first.url), 5, "the shared redis-server to stop")


def test_clients_take_the_running_blocks_id(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    path = tmp_path / "state.json"
    shared = attach(path, "tok")
    try:
        settings = client_settings(Settings.from_env({}), str(path))
        assert (settings.redis_url, settings.block_id) == (shared.url, "tok")
        _add_user(path, _other_user(spawned).pid, "det")
        with pytest.raises(ConfigError, match="blocks det, tok run here: pass --block-id"):
            client_settings(Settings.from_env({}), str(path))
        chosen = client_settings(Settings.from_env({}, block_id="det"), str(path))
        assert chosen.block_id == "det"
    finally:
        for proc in spawned:
            proc.communicate(b"")
        detach(path)
    with pytest.raises(ConfigError, match=r"start one with `aios-instance run FILE\.py:Class`"):
        client_settings(Settings.from_env({}), str(path))


def test_a_state_file_of_dead_processes_only_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    code = "import os; print(os.getpid())"
    dead = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout)
    path.write_text(json.dumps({"url": "redis://127.0.0.1:1/0", "users": {str(dead): "x"}}))
    assert read_state(path) is None


def test_a_client_that_joined_keeps_the_server_until_it_leaves(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    path = tmp_path / "state.json"
    url = attach(path, "tok").url
    run = _other_user(spawned)  # stands for the `run`; this process becomes a client (tail)
    state = json.loads(path.read_text())
    path.write_text(json.dumps({**state, "users": {str(run.pid): "tok"}}))
    settings = client_settings(Settings.from_env({}), str(path), join=True)
    assert settings.redis_url == url
    run.communicate(b"")  # the run exits; the client still reads
    assert _answers(url) and read_state(path) is not None
    assert detach(path) is True  # the client was the last user
    eventually(lambda: not _answers(url), 5, "the shared redis-server to stop")
