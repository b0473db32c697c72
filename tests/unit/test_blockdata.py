from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from aios_instance.blockdata import BlockData, load_block_data
from aios_instance.errors import ConfigError

DOC = {
    "blockInitData": {"model": "m1", "nested": {"a": 1, "b": 2}},
    "initSettings": {"fps": 5},
    "parameters": {"threshold": 0.6},
}


class _BlocksDB(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []
    failures_left = 0

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        if self.path != "/blocks/b1":
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"success": True, "data": DOC}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def blocksdb() -> Iterator[str]:
    _BlocksDB.hits = []
    _BlocksDB.failures_left = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BlocksDB)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_no_source_gives_empty_sections() -> None:
    data = load_block_data("b1")
    assert (data.init_data, data.init_settings, data.parameters, data.document) == ({}, {}, {}, {})


def test_from_blocksdb_with_retry(blocksdb: str) -> None:
    _BlocksDB.failures_left = 1
    data = load_block_data("b1", blocks_db_uri=blocksdb, retries=3)
    assert data.parameters == {"threshold": 0.6} and data.init_settings == {"fps": 5}
    assert _BlocksDB.hits == ["/blocks/b1", "/blocks/b1"]


def test_blocksdb_unknown_block_fails_clearly(blocksdb: str) -> None:
    with pytest.raises(ConfigError, match="no block 'nope'"):
        load_block_data("nope", blocks_db_uri=blocksdb)


def test_blocksdb_unreachable_gives_up_after_retries() -> None:
    from aios_instance.embedded import free_port

    with pytest.raises(ConfigError, match="after 2 attempts"):
        load_block_data(
            "b1", blocks_db_uri=f"http://127.0.0.1:{free_port()}", retries=2, timeout_s=0.5
        )


def test_file_json_and_yaml(tmp_path: Path) -> None:
    j = tmp_path / "block.json"
    j.write_text(json.dumps(DOC))
    assert load_block_data("b1", file=str(j)).init_data["model"] == "m1"
    y = tmp_path / "block.yaml"
    y.write_text("parameters:\n  threshold: 0.9\n")
    assert load_block_data("b1", file=str(y)).parameters == {"threshold": 0.9}
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid"):
        load_block_data("b1", file=str(bad))


def test_custom_init_data_merges(tmp_path: Path) -> None:
    j = tmp_path / "block.json"
    j.write_text(json.dumps(DOC))
    data = load_block_data(
        "b1",
        file=str(j),
        custom_init_data={"parameters": {"extra": 1}, "nested": {"b": 3}, "model": "m2"},
    )
    assert data.parameters == {"threshold": 0.6, "extra": 1}
    assert data.init_data == {"model": "m2", "nested": {"a": 1, "b": 3}}


SAVER = {"saver": {"external": True, "external_redis_url": "saver:6380"}}
AUDIT = {"audit": {"external": False}}


def test_sidecars_from_each_place() -> None:
    assert BlockData({"blockInitData": {"side_cars": SAVER}}).sidecars == SAVER
    assert BlockData({"sidecars": SAVER}).sidecars == SAVER
    assert BlockData({"initSettings": {"sidecars": SAVER}}).sidecars == SAVER
    assert BlockData({"blockInitData": {"side_cars": {}}, "sidecars": AUDIT}).sidecars == AUDIT
    assert BlockData({}).sidecars == {} and BlockData({}).sidecar_places() == []


def test_the_platforms_place_wins_and_the_others_are_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    j = tmp_path / "block.json"
    doc = {"blockInitData": {"side_cars": SAVER}, "sidecars": AUDIT, "initSettings": {}}
    j.write_text(json.dumps(doc))
    data = load_block_data("b1", file=str(j))
    assert data.sidecars == SAVER
    assert data.sidecar_places() == ["blockInitData.side_cars", "sidecars"]
    assert "using blockInitData.side_cars, ignoring sidecars" in caplog.text
    only_top = BlockData({"sidecars": AUDIT, "initSettings": {"sidecars": SAVER}})
    assert only_top.sidecars == AUDIT


def test_custom_init_data_side_cars_land_in_the_platforms_place() -> None:
    data = load_block_data("b1", custom_init_data={"side_cars": SAVER})
    assert data.init_data == {"side_cars": SAVER} and data.sidecars == SAVER


@pytest.mark.parametrize(
    "block_id", ["../../etc/passwd", "a/../../x", "..", ".", "", "x/../../outside"]
)
def test_a_file_blocksdb_never_reads_outside_its_blocks_folder(
    tmp_path: Path, block_id: str
) -> None:
    (tmp_path / "db" / "blocks").mkdir(parents=True)
    (tmp_path / "outside").write_text(json.dumps(DOC))  # what a traversal would reach
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(json.dumps(DOC))
    base = (tmp_path / "db").as_uri()
    with pytest.raises(ConfigError) as caught:
        load_block_data(block_id, blocks_db_uri=base, retries=1)
    message = str(caught.value)
    assert "\n" not in message and repr(block_id) in message


def test_a_file_blocksdb_reads_the_blocks_own_file(tmp_path: Path) -> None:
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "cam-1:v2").write_text(json.dumps({"success": True, "data": DOC}))
    data = load_block_data("cam-1:v2", blocks_db_uri=tmp_path.as_uri() + "/", retries=1)
    assert data.parameters == {"threshold": 0.6}


def test_the_block_id_is_one_quoted_path_segment_over_http(blocksdb: str) -> None:
    with pytest.raises(ConfigError, match="no block"):
        load_block_data("b1/../b1?x=#", blocks_db_uri=blocksdb, retries=1)
    assert _BlocksDB.hits == ["/blocks/b1%2F..%2Fb1%3Fx%3D%23"]
