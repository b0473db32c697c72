"""A block run the spec's way, `python block.py` with `Block(MyBlock).run()`: it logs like
the CLI does, and a job that fails shows in its output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import redis

from aios_instance import keys
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.packet import make_packet
from tests.support import eventually

BLOCK_SOURCE = """
import json
from aios_instance import *

class Picky:
    def __init__(self, context):
        pass

    def on_preprocess(self, packet):
        return True, [PreProcessResult(packet=packet, extra_data=json.loads(packet.data))]

    def on_data(self, entry):
        if entry.extra_data.get("explode"):
            raise ValueError("value out of range")
        return True, OnDataResult(output=entry.extra_data)

if __name__ == "__main__":
    Block(Picky).run()
"""


def test_python_block_py_logs_serving_and_each_failed_job(
    tmp_path: Path, redis_server: EmbeddedRedis, spawned: list[subprocess.Popen[bytes]]
) -> None:
    (tmp_path / "block.py").write_text(BLOCK_SOURCE)
    log = tmp_path / "out.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOS_", "REDIS_"))}
    env.update(
        BLOCK_ID="picky",
        AIOS_REDIS_URL=redis_server.url,
        MGMT_PORT=str(free_port()),
        AIOS_WS_PORT=str(free_port()),
        METRICS_PORT="0",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "block.py"], cwd=tmp_path, env=env, stdout=out, stderr=out
        )
    spawned.append(proc)
    eventually(lambda: "serving picky_inputs" in log.read_text(), 20.0, "the serving line")
    client = redis.Redis.from_url(redis_server.url, protocol=2)
    packet = make_packet({"explode": True}, session_id="cam", seq_no=7)
    client.lpush(keys.inputs("picky"), packet.SerializeToString())
    line = eventually(
        lambda: next((x for x in log.read_text().splitlines() if "failed" in x), ""), 20.0
    )
    assert "WARNING" in line and "job cam:7 failed (user_error)" in line
    assert "value out of range" in line
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    client.close()
