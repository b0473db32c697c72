"""The existing SDK's call shapes: labelnames= on metric updates, aios_packet_pb2."""

from __future__ import annotations

import pytest

from aios_instance import AIOSMetrics, AIOSPacket


def test_metric_updates_take_labelnames() -> None:
    metrics = AIOSMetrics()
    metrics.register_counter("frames_total", "Frames", labelnames=["camera"])
    metrics.register_gauge("fps", "Frames per second", labelnames=["camera"])
    metrics.register_histogram("latency_seconds", "Latency", labelnames=["camera"])
    metrics.increment_counter("frames_total", labelnames={"camera": "c1"})
    metrics.increment_counter("frames_total", 2, labelnames=["c1"])
    metrics.set_gauge("fps", 25, labelnames={"camera": "c1"})
    metrics.observe_histogram("latency_seconds", 0.1, labelnames={"camera": "c1"})
    assert metrics.sample("frames_total", {"camera": "c1"}) == 3
    assert metrics.sample("fps", {"camera": "c1"}) == 25
    assert metrics.sample("latency_seconds_count", {"camera": "c1"}) == 1
    with pytest.raises(TypeError, match="not both"):
        metrics.set_gauge("fps", 1, labels=["c1"], labelnames=["c1"])


def test_the_generated_packet_module_is_importable_where_old_blocks_import_it() -> None:
    from aios_instance.aios_packet_pb2 import AIOSPacket as PbPacket
    from aios_instance.aios_packet_pb2 import FileInfo as PbFileInfo

    old = PbPacket(session_id="s", seq_no=3, data='{"v": 1}')
    old.files.append(PbFileInfo(metadata="{}", file_data=b"x"))
    ours = AIOSPacket.FromString(old.SerializeToString())
    assert (ours.session_id, ours.seq_no, ours.data) == ("s", 3, '{"v": 1}')
    assert PbPacket.FromString(ours.SerializeToString()) == old
