"""AIOSMetrics, RuntimeMetrics, the snapshot and the HTTP exposition (the NODE_METRICS
exporter: tests/unit/control/test_exporter.py)."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable

import pytest
import redis
from prometheus_client import REGISTRY, CollectorRegistry

from aios_instance import Block, _json
from aios_instance.embedded import EmbeddedRedis
from aios_instance.metrics import AIOSMetrics, UnknownMetricError, flatten, sample_key
from aios_instance.settings import Settings
from tests.support import eventually

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def metrics() -> AIOSMetrics:
    return AIOSMetrics(block_id="blk", instance_id="inst-1")


# -- registration and updates ---------------------------------------------------------------


def test_own_registry_never_the_global_one(metrics: AIOSMetrics) -> None:
    metrics.register_counter("own_registry_probe_total", "probe")
    assert metrics.registry is not REGISTRY
    assert REGISTRY.get_sample_value("own_registry_probe_total") is None
    shared = CollectorRegistry()
    assert AIOSMetrics(registry=shared).registry is shared


def test_counter_without_labels(metrics: AIOSMetrics) -> None:
    metrics.register_counter("images_processed_total", "Images processed")
    metrics.increment_counter("images_processed_total")
    metrics.increment_counter("images_processed_total", 2.5)
    assert metrics.sample("images_processed_total") == 3.5
    assert metrics.registry.get_sample_value("images_processed_total") == 3.5


def test_total_suffix_is_not_doubled(metrics: AIOSMetrics) -> None:
    metrics.register_counter("images_processed_total", "with suffix")
    metrics.register_counter("frames", "without suffix")
    metrics.increment_counter("images_processed_total")
    metrics.increment_counter("frames")
    metrics.increment_counter("frames_total")  # either spelling updates the same counter
    text = metrics.expose().decode()
    assert "images_processed_total 1.0" in text
    assert "_total_total" not in text
    assert metrics.sample("frames_total") == 2.0
    # "x" and "x_total" are one counter: registering both is idempotent
    assert metrics.register_counter("frames_total", "again") is metrics.register_counter(
        "frames", "again"
    )


def test_gauge_and_histogram_without_labels(metrics: AIOSMetrics) -> None:
    metrics.register_gauge("input_queue_length", "Jobs waiting")
    metrics.register_histogram("latency_seconds", "Latency", buckets=[0.1, 0.5, 1])
    metrics.set_gauge("input_queue_length", 7)
    metrics.set_gauge("input_queue_length", 3)
    for value in (0.05, 0.3, 0.3, 2.0):
        metrics.observe_histogram("latency_seconds", value)
    reg = metrics.registry
    assert reg.get_sample_value("input_queue_length") == 3.0
    assert reg.get_sample_value("latency_seconds_bucket", {"le": "0.1"}) == 1.0
    assert reg.get_sample_value("latency_seconds_bucket", {"le": "0.5"}) == 3.0
    assert reg.get_sample_value("latency_seconds_bucket", {"le": "1.0"}) == 3.0
    assert reg.get_sample_value("latency_seconds_bucket", {"le": "+Inf"}) == 4.0
    assert reg.get_sample_value("latency_seconds_count") == 4.0
    assert reg.get_sample_value("latency_seconds_sum") == pytest.approx(2.65)


def test_histogram_default_buckets(metrics: AIOSMetrics) -> None:
    metrics.register_histogram("inference_latency_seconds", "Inference time")
    metrics.observe_histogram("inference_latency_seconds", 0.007)
    reg = metrics.registry
    assert reg.get_sample_value("inference_latency_seconds_bucket", {"le": "0.005"}) == 0.0
    assert reg.get_sample_value("inference_latency_seconds_bucket", {"le": "0.01"}) == 1.0
    assert reg.get_sample_value("inference_latency_seconds_bucket", {"le": "10.0"}) == 1.0


def test_all_types_with_labels_as_dict_or_sequence(metrics: AIOSMetrics) -> None:
    metrics.register_counter("detections_total", "Detections", ["cls", "camera"])
    metrics.register_gauge("fps", "Frames per second", ["camera"])
    metrics.register_histogram("objects", "Objects per image", ["camera"], buckets=[0, 1, 5])
    metrics.increment_counter("detections_total", 2, labels={"cls": "car", "camera": "c1"})
    metrics.increment_counter("detections_total", labels=["car", "c1"])
    metrics.increment_counter("detections_total", labels=("person", 2))  # values become str
    metrics.set_gauge("fps", 29.97, labels={"camera": "c1"})
    metrics.set_gauge("fps", 15, labels="c2")  # a bare str is the one label value
    metrics.observe_histogram("objects", 3, labels=["c1"])
    reg = metrics.registry
    assert reg.get_sample_value("detections_total", {"cls": "car", "camera": "c1"}) == 3.0
    assert reg.get_sample_value("detections_total", {"cls": "person", "camera": "2"}) == 1.0
    assert reg.get_sample_value("fps", {"camera": "c1"}) == 29.97
    assert reg.get_sample_value("fps", {"camera": "c2"}) == 15.0
    assert reg.get_sample_value("objects_bucket", {"camera": "c1", "le": "1.0"}) == 0.0
    assert reg.get_sample_value("objects_bucket", {"camera": "c1", "le": "5.0"}) == 1.0


def test_label_mistakes_are_clear_errors(metrics: AIOSMetrics) -> None:
    metrics.register_counter("hits_total", "Hits", ["route"])
    metrics.register_gauge("plain", "No labels")
    with pytest.raises(ValueError, match=r"'hits_total' has labels \['route'\]; pass labels="):
        metrics.increment_counter("hits_total")
    with pytest.raises(ValueError, match=r"takes labels \['route'\], got \['path'\]"):
        metrics.increment_counter("hits_total", labels={"path": "/"})
    with pytest.raises(ValueError, match=r"takes 1 label values"):
        metrics.increment_counter("hits_total", labels=["a", "b"])
    with pytest.raises(ValueError, match="'plain' has no labels"):
        metrics.set_gauge("plain", 1, labels={"x": "y"})


def test_reregistering_is_idempotent(metrics: AIOSMetrics) -> None:
    c = metrics.register_counter("jobs_total", "Jobs", ["kind"])
    g = metrics.register_gauge("depth", "Depth")
    h = metrics.register_histogram("lat_seconds", "Latency", buckets=[1, 2])
    assert metrics.register_counter("jobs_total", "other doc", ("kind",)) is c
    assert metrics.register_gauge("depth", "Depth") is g
    assert metrics.register_histogram("lat_seconds", "Latency", buckets=[1.0, 2.0]) is h
    metrics.increment_counter("jobs_total", labels={"kind": "a"})
    assert metrics.sample("jobs_total", {"kind": "a"}) == 1.0


def test_conflicting_reregistration_names_the_metric(metrics: AIOSMetrics) -> None:
    metrics.register_counter("jobs_total", "Jobs", ["kind"])
    metrics.register_histogram("lat_seconds", "Latency", buckets=[1, 2])
    with pytest.raises(
        ValueError,
        match=r"'jobs' \(registered as 'jobs_total'\) is already registered as a counter",
    ):
        metrics.register_gauge("jobs", "now a gauge")  # same family name "jobs"
    with pytest.raises(ValueError, match=r"'jobs_total' is already registered with labelnames"):
        metrics.register_counter("jobs_total", "Jobs", ["kind", "extra"])
    with pytest.raises(ValueError, match="'lat_seconds' is already registered with buckets"):
        metrics.register_histogram("lat_seconds", "Latency", buckets=[5])
    with pytest.raises(ValueError, match="cannot register gauge 'jobs_total'"):
        metrics.register_gauge("jobs_total", "clashes with the counter's exposition name")


def test_invalid_names_are_rejected(metrics: AIOSMetrics) -> None:
    with pytest.raises(ValueError, match="invalid metric name 'bad name'"):
        metrics.register_counter("bad name", "spaces are not allowed")
    with pytest.raises(ValueError, match="invalid metric name '9lives'"):
        metrics.register_gauge("9lives", "leading digit")
    with pytest.raises(ValueError, match="invalid label name 'a-b' for metric 'ok'"):
        metrics.register_histogram("ok", "bad label", ["a-b"])
    with pytest.raises(ValueError, match="invalid label name '__reserved'"):
        metrics.register_gauge("ok", "reserved label", ["__reserved"])
    with pytest.raises(TypeError, match="not a str"):
        metrics.register_gauge("ok", "labelnames as str", "route")


def test_updating_an_unregistered_metric(metrics: AIOSMetrics) -> None:
    with pytest.raises(ValueError, match="'missing_total' is not registered; register it first"):
        metrics.increment_counter("missing_total")
    with pytest.raises(KeyError):
        metrics.set_gauge("missing", 1)
    with pytest.raises(UnknownMetricError) as info:
        metrics.observe_histogram("missing_seconds", 1)
    assert str(info.value).endswith("register it first with register_histogram()")


def test_updating_with_the_wrong_type(metrics: AIOSMetrics) -> None:
    metrics.register_gauge("depth", "Depth")
    with pytest.raises(ValueError, match="'depth' is a gauge, not a counter"):
        metrics.increment_counter("depth")


def test_updates_are_thread_safe(metrics: AIOSMetrics) -> None:
    def work() -> None:
        for _ in range(1000):
            metrics.register_counter("racy_total", "Racy", ["w"])
            metrics.increment_counter("racy_total", labels={"w": "x"})

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert metrics.sample("racy_total", {"w": "x"}) == 8000.0


# -- exposition and snapshot ----------------------------------------------------------------


def test_exposition_contains_labelled_samples(metrics: AIOSMetrics) -> None:
    metrics.register_counter("detections_total", "Detections", ["cls"])
    metrics.register_gauge("fps", "FPS", ["camera"])
    metrics.increment_counter("detections_total", 4, labels={"cls": "car"})
    metrics.set_gauge("fps", 12.5, labels={"camera": "front"})
    text = metrics.expose().decode()
    assert "# TYPE detections_total counter" in text
    assert 'detections_total{cls="car"} 4.0' in text
    assert 'fps{camera="front"} 12.5' in text


def test_sample_key_format() -> None:
    assert sample_key("up", {}) == "up"
    assert sample_key("x", {"b": "2", "a": "1"}) == 'x{a="1",b="2"}'
    assert sample_key("x", {"a": 'q"\\\n'}) == r'x{a="q\"\\\n"}'


def test_snapshot_shape_and_flattening(metrics: AIOSMetrics) -> None:
    metrics.register_counter("images_processed_total", "Images")
    metrics.register_histogram("lat_seconds", "Latency", ["step"], buckets=[0.1, 0.5])
    metrics.increment_counter("images_processed_total", 3)
    metrics.observe_histogram("lat_seconds", 0.3, labels={"step": "infer"})
    before = time.time()
    snap = metrics.snapshot(node_id="node-a", hardware={"gpus": []})
    fields = {"blockId", "instanceId", "nodeId", "type", "timestamp", "metrics", "hardware"}
    assert set(snap) == fields
    assert (snap["blockId"], snap["instanceId"], snap["nodeId"]) == ("blk", "inst-1", "node-a")
    assert snap["type"] == "instance"
    assert before <= snap["timestamp"] <= time.time()
    assert snap["hardware"] == {"gpus": []}
    flat = snap["metrics"]
    assert flat["images_processed_total"] == 3.0
    assert flat['lat_seconds_bucket{le="0.1",step="infer"}'] == 0.0
    assert flat['lat_seconds_bucket{le="0.5",step="infer"}'] == 1.0
    assert flat['lat_seconds_bucket{le="+Inf",step="infer"}'] == 1.0
    assert flat['lat_seconds_count{step="infer"}'] == 1.0
    assert not any("_created" in key for key in flat)
    assert _json.loads(_json.dumps(snap)) == snap  # JSON-clean


def test_flatten_of_an_empty_registry() -> None:
    assert flatten(CollectorRegistry()) == {}
    assert AIOSMetrics().snapshot()["hardware"] == {}


# -- runtime metrics ------------------------------------------------------------------------


def test_snapshot_node_id_falls_back_to_the_metrics_node_id() -> None:
    m = AIOSMetrics(block_id="b", node_id="node-7")
    assert m.snapshot()["nodeId"] == "node-7"
    assert m.snapshot(node_id="explicit")["nodeId"] == "explicit"


class _Idle:
    def __init__(self, context: object) -> None:
        self.context = context

    def on_preprocess(self, packet: object) -> object:
        return False, "unused"

    def on_data(self, entry: object) -> object:
        return False, "unused"


@pytest.mark.parametrize(
    ("node_id", "allocation", "expected"),
    [
        ("", {"node_id": "node-from-allocation"}, "node-from-allocation"),
        ("node-from-setting", {"node_id": "node-from-allocation"}, "node-from-setting"),
        ("", None, ""),
    ],
)
def test_runtime_snapshots_name_the_node(
    redis_factory: Callable[[], EmbeddedRedis],
    node_id: str,
    allocation: dict[str, str] | None,
    expected: str,
) -> None:
    server = redis_factory()  # NODE_METRICS is one list per Redis
    settings = Settings(
        block_id="snap",
        redis_url_override=server.url,
        mgmt_port=0,
        ws_port=0,
        metrics_port=0,
        metrics_redis_host=server.url,
        metrics_interval_s=0.05,
        idle_wait_s=0.2,
        node_id=node_id,
        allocation_info=allocation,
    )
    runtime = Block(_Idle, settings).start()
    client = redis.Redis.from_url(server.url, protocol=2)
    try:
        assert eventually(lambda: client.llen("NODE_METRICS") >= 1)
        snap = _json.loads(client.lindex("NODE_METRICS", 0) or b"")
    finally:
        client.close()
        runtime.stop()
        assert runtime.wait(10)
    assert (snap["blockId"], snap["nodeId"]) == ("snap", expected)


# -- HTTP exposition ------------------------------------------------------------------------


def test_serve_http_serves_the_private_registry(metrics: AIOSMetrics) -> None:
    metrics.register_counter("detections_total", "Detections", ["cls"])
    metrics.increment_counter("detections_total", 2, labels={"cls": "car"})
    with metrics.serve_http(0, addr="127.0.0.1") as server:
        assert server.port > 0
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            body = response.read().decode()
    assert 'detections_total{cls="car"} 2.0' in body
    assert "python_gc_objects_collected_total" not in body  # not the global registry
    assert not server.thread.is_alive()


def test_the_exposition_has_process_series_and_the_block_and_no_created_series() -> None:
    metrics = AIOSMetrics(block_id="det", instance_id="det-0")
    metrics.register_counter("jobs_total", "Jobs")
    metrics.register_histogram("latency_seconds", "Latency")
    text = metrics.expose().decode()
    assert "_created" not in text
    assert 'aios_block_info{block_id="det",instance_id="det-0"} 1.0' in text
    assert "process_resident_memory_bytes" in text
    assert "jobs_total 0.0" in text and "latency_seconds_count 0.0" in text


def test_a_registry_given_by_the_caller_is_left_as_it_is() -> None:
    registry = CollectorRegistry()
    AIOSMetrics(block_id="det", registry=registry)
    assert list(registry.collect()) == []
