"""hardware_snapshot: host readings from psutil, GPUs from NVML (empty without a driver)."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from aios_instance.runtime import hardware
from aios_instance.runtime.hardware import gpu_snapshot, hardware_snapshot, host_snapshot

pytestmark = pytest.mark.timeout(30)

HOST_KEYS = {
    "cpu_percent",
    "cpu_count",
    "memory_total_bytes",
    "memory_used_bytes",
    "memory_percent",
    "process_rss_bytes",
}
GPU_KEYS = {"index", "name", "memory_total_bytes", "memory_used_bytes", "utilization_percent"}


def has_nvidia_driver() -> bool:
    return Path("/dev/nvidiactl").exists()


@pytest.fixture
def fresh_nvml() -> Iterator[None]:
    """Probe NVML again in this test, and again after it."""
    hardware._NVML.reset()
    yield
    hardware._NVML.reset()


def test_host_snapshot_values() -> None:
    snap = host_snapshot()
    assert set(snap) == HOST_KEYS
    assert snap["cpu_count"] >= 1
    assert 0.0 <= snap["cpu_percent"] <= 100.0 * snap["cpu_count"]
    assert 0 < snap["memory_used_bytes"] <= snap["memory_total_bytes"]
    assert 0.0 <= snap["memory_percent"] <= 100.0
    assert snap["process_rss_bytes"] > 0


def test_hardware_snapshot_keys() -> None:
    snap = hardware_snapshot()
    assert set(snap) == HOST_KEYS | {"gpus"}
    assert isinstance(snap["gpus"], list)


@pytest.mark.skipif(has_nvidia_driver(), reason="this machine has an NVIDIA driver")
def test_no_gpus_without_a_driver(fresh_nvml: None) -> None:
    assert hardware_snapshot()["gpus"] == []
    assert gpu_snapshot() == []  # decided once, asked again


@pytest.mark.skipif(not has_nvidia_driver(), reason="no NVIDIA driver here")
def test_gpus_with_a_driver(fresh_nvml: None) -> None:
    gpus = gpu_snapshot()
    assert gpus, "a driver is present, so NVML should list at least one GPU"
    for index, gpu in enumerate(gpus):
        assert set(gpu) == GPU_KEYS
        assert gpu["index"] == index and isinstance(gpu["name"], str) and gpu["name"]
        assert 0 <= gpu["memory_used_bytes"] <= gpu["memory_total_bytes"]
        util = gpu["utilization_percent"]
        assert util is None or 0.0 <= util <= 100.0


def test_no_gpus_when_pynvml_is_missing(
    fresh_nvml: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    caplog.set_level("DEBUG", logger="aios_instance.runtime.hardware")
    assert gpu_snapshot() == []
    assert gpu_snapshot() == []
    notes = [r for r in caplog.records if "NVML unavailable" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelname == "DEBUG"  # logged once


class StandInNvml(types.ModuleType):
    """A module with NVML's call shapes for two GPUs (this machine has none).

    GPU 1 returns its name as bytes (older pynvml) and cannot report utilization (as MIG
    instances do); the real module is exercised by test_gpus_with_a_driver on GPU machines.
    """

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.inits = 0

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str | bytes:
        return "NVIDIA H200" if handle == 0 else b"NVIDIA H200 MIG 1g.18gb"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(total=1000 * (handle + 1), used=10 * (handle + 1))

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> types.SimpleNamespace:
        if handle == 1:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return types.SimpleNamespace(gpu=37, memory=5)


def test_gpu_entries_from_nvml(fresh_nvml: None, monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = StandInNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    expected = [
        {
            "index": 0,
            "name": "NVIDIA H200",
            "memory_total_bytes": 1000,
            "memory_used_bytes": 10,
            "utilization_percent": 37.0,
        },
        {
            "index": 1,
            "name": "NVIDIA H200 MIG 1g.18gb",
            "memory_total_bytes": 2000,
            "memory_used_bytes": 20,
            "utilization_percent": None,
        },
    ]
    assert gpu_snapshot() == expected
    assert hardware_snapshot()["gpus"] == expected
    assert nvml.inits == 1  # initialised once


def test_a_failing_nvml_query_gives_no_gpus(
    fresh_nvml: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def driver_gone() -> int:
        raise OSError("NVML_ERROR_GPU_IS_LOST")

    nvml = StandInNvml()
    monkeypatch.setattr(nvml, "nvmlDeviceGetCount", driver_gone)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert gpu_snapshot() == []
