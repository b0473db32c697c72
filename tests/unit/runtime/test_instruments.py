"""RuntimeMetrics: the runtime's own series, bound up front, fed once per batch."""

from __future__ import annotations

import pytest

from aios_instance.metrics import AIOSMetrics
from aios_instance.runtime.instruments import FAILURE_REASONS, PHASES, RuntimeMetrics


@pytest.fixture
def metrics() -> AIOSMetrics:
    return AIOSMetrics(block_id="blk", instance_id="inst-1")


def test_runtime_counters(metrics: AIOSMetrics) -> None:
    rt = RuntimeMetrics(metrics, sidecars=["resizer"])
    rt.packets_in(5)
    rt.packets_out(4)
    rt.held()
    rt.redeliveries(2)
    rt.packets_failed("user_error")
    rt.packets_failed("bad_input", 3)
    rt.dead_lettered("max_deliveries")
    rt.muxer_expired(2)
    rt.sidecar_push_failed("resizer")
    rt.sidecar_push_failed("late-added")
    rt.event_push_failed()
    s = metrics.sample
    assert (
        s("aios_packets_in_total", {"ingress": "queue"}),
        s("aios_packets_out_total", {"ingress": "queue"}),
    ) == (5.0, 4.0)
    assert (s("aios_packets_held_total", {"ingress": "queue"}), s("aios_redeliveries_total")) == (
        1.0,
        2.0,
    )
    assert s("aios_packets_failed_total", {"ingress": "queue", "reason": "user_error"}) == 1.0
    assert s("aios_packets_failed_total", {"ingress": "queue", "reason": "bad_input"}) == 3.0
    assert (
        s("aios_packets_failed_total", {"ingress": "queue", "reason": "expired"}) == 0.0
    )  # pre-bound
    assert s("aios_dead_lettered_total", {"ingress": "queue", "reason": "max_deliveries"}) == 1.0
    assert s("aios_muxer_expired_total") == 2.0
    assert s("aios_sidecar_push_failed_total", {"sidecar": "resizer"}) == 1.0
    assert s("aios_sidecar_push_failed_total", {"sidecar": "late-added"}) == 1.0
    assert s("aios_event_push_failed_total") == 1.0


def test_runtime_histograms_and_gauges(metrics: AIOSMetrics) -> None:
    rt = RuntimeMetrics(metrics)
    rt.observe_phase("on_data", 0.002)
    rt.observe_end_to_end(0.04)
    rt.observe_end_to_end(-1.0)  # clock skew counts as 0
    rt.observe_batch_size(3)
    rt.set_queue_depth(17)
    rt.set_oldest_age_s(1.5)
    rt.set_in_flight(5)
    rt.set_muxer_open_groups(2)
    rt.set_outbox(3, 300, 2)
    rt.set_routing_cache(7)
    rt.job_timed_out("on_data")
    s = metrics.sample
    assert s("aios_phase_seconds_count", {"phase": "on_data"}) == 1.0
    assert s("aios_phase_seconds_bucket", {"phase": "on_data", "le": "0.0025"}) == 1.0
    assert s("aios_phase_seconds_count", {"phase": "preprocess"}) == 0.0  # pre-bound
    assert s("aios_phase_seconds_count", {"phase": "decode"}) is None  # never observed: gone
    assert s("aios_end_to_end_seconds_count") == 2.0
    assert s("aios_end_to_end_seconds_bucket", {"le": "0.001"}) == 1.0
    assert s("aios_batch_size_bucket", {"le": "2.0"}) == 0.0
    assert s("aios_batch_size_bucket", {"le": "4.0"}) == 1.0
    assert s("aios_batch_size_bucket", {"le": "1024.0"}) == 1.0
    assert (s("aios_queue_depth"), s("aios_oldest_age_seconds")) == (17.0, 1.5)
    assert (s("aios_in_flight"), s("aios_muxer_open_groups")) == (5.0, 2.0)
    assert (s("aios_parked_outputs"), s("aios_parked_bytes"), s("aios_endpoints")) == (3, 300, 2)
    assert s("aios_output_ptr_cache_entries") == 7.0
    assert s("aios_job_timeouts_total", {"phase": "on_data"}) == 1.0
    assert s("aios_job_timeouts_total", {"phase": "flush"}) == 0.0  # pre-bound


def test_runtime_metrics_reject_unknown_label_values(metrics: AIOSMetrics) -> None:
    rt = RuntimeMetrics(metrics)
    assert "expired" in FAILURE_REASONS
    assert PHASES == ("preprocess", "on_data", "route", "push")
    with pytest.raises(ValueError, match="unknown reason 'oops'"):
        rt.packets_failed("oops")
    with pytest.raises(ValueError, match="unknown phase 'think'"):
        rt.observe_phase("think", 1.0)
    RuntimeMetrics(metrics)  # a second instance re-uses the same metrics


# -- the runtime's snapshots --------------------------------------------------------------
