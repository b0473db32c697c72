"""The output-saver sidecar, fed by BlockSideCars through a real redis-server."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis

from aios_instance.embedded import EmbeddedRedis
from aios_instance.packet import AIOSPacket, make_packet
from aios_instance.sidecars import BlockSideCars, SidecarConsumer


def _load_example() -> ModuleType:
    name = "output_saver_sidecar_example"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("sidecar.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


example = _load_example()


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    """A private redis-server standing in for the sidecar's Redis."""
    with EmbeddedRedis() as srv:
        yield srv


@pytest.fixture
def client(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A client on that server, flushed first."""
    c = redis.Redis.from_url(server.url, protocol=2)
    c.flushdb()
    yield c
    c.close()


@pytest.fixture
def side_cars(server: EmbeddedRedis) -> Iterator[BlockSideCars]:
    """The block's side, configured with this sidecar as an external one."""
    sc = BlockSideCars("blk", {"saver": {"external": True, "external_redis_url": server.url}})
    yield sc
    sc.close()


def _push(side_cars: BlockSideCars, *packets: AIOSPacket) -> None:
    for packet in packets:
        assert side_cars.push_to_sidecar("saver", packet)


def test_saves_data_and_files(
    client: redis.Redis, side_cars: BlockSideCars, tmp_path: Path
) -> None:
    packet = make_packet(
        {"label": "cat", "score": 0.9},
        files=[({"name": "img.jpg"}, b"\xff\xd8jpeg"), ("not json", b"")],
        session_id="sess-1",
        seq_no=7,
        ts=12.5,
    )
    _push(side_cars, packet)
    saver = example.OutputSaver(tmp_path)
    consumer = SidecarConsumer(client, saver)
    assert consumer.run_once(timeout_s=1) == 1
    saved = tmp_path / "sess-1" / "7"
    record = json.loads((saved / "packet.json").read_text())
    assert record["data"] == {"label": "cat", "score": 0.9}
    assert (record["session_id"], record["seq_no"], record["ts"]) == ("sess-1", 7, 12.5)
    assert record["files"] == [
        {"name": "file-0.bin", "size": 6, "metadata": {"name": "img.jpg"}},
        {"name": "file-1.bin", "size": 0, "metadata": "not json"},
    ]
    assert (saved / "file-0.bin").read_bytes() == b"\xff\xd8jpeg"
    assert (saved / "file-1.bin").read_bytes() == b""
    assert sorted(p.name for p in (tmp_path / "sess-1").iterdir()) == ["7"]  # no staging left


def test_same_job_twice_is_kept_twice(tmp_path: Path) -> None:
    saver = example.OutputSaver(tmp_path)
    first = saver(make_packet({"n": 1}, session_id="s", seq_no=1))
    second = saver(make_packet({"n": 2}, session_id="s", seq_no=1))
    assert (first.name, second.name) == ("1", "1.1")
    assert json.loads((second / "packet.json").read_text())["data"] == {"n": 2}


@pytest.mark.parametrize("session_id", ["../../escape", "..", "a/b\\c", ""])
def test_session_ids_cannot_escape_the_output_dir(tmp_path: Path, session_id: str) -> None:
    saved = example.OutputSaver(tmp_path)(make_packet(1, session_id=session_id))
    assert saved.resolve().parent.parent == tmp_path.resolve()


def test_main_drains_the_queue(
    server: EmbeddedRedis, client: redis.Redis, side_cars: BlockSideCars, tmp_path: Path
) -> None:
    _push(side_cars, *(make_packet({"i": i}, session_id="s", seq_no=i) for i in range(5)))
    client.rpush("INPUTS", b"\xff garbage")
    assert example.main(["--redis-url", server.url, "--out-dir", str(tmp_path), "--drain"]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["0", "1", "2", "3", "4"]
    assert client.llen("INPUTS") == 0


class StopWhenExists(threading.Event):
    """A stop event that reads as set once ``path`` exists."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()


def test_main_runs_until_stopped(
    server: EmbeddedRedis, client: redis.Redis, side_cars: BlockSideCars, tmp_path: Path
) -> None:
    target = tmp_path / "live" / "1" / "packet.json"
    argv = ["--redis-url", server.url, "--out-dir", str(tmp_path), "--poll-s", "0.1"]
    thread = threading.Thread(target=example.main, args=(argv, StopWhenExists(target)))
    thread.start()
    _push(side_cars, make_packet({"live": True}, session_id="live", seq_no=1))
    thread.join(30)
    assert not thread.is_alive()
    assert json.loads(target.read_text())["data"] == {"live": True}
    assert client.llen("INPUTS") == 0
