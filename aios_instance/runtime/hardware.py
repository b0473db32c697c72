"""Host and GPU readings for the ``hardware`` section of the NODE_METRICS snapshot.

Host figures come from psutil. GPU figures come from NVML through ``pynvml`` (the
``nvidia-ml-py`` package); when it is not installed, or there is no driver or GPU, ``gpus`` is
an empty list. NVML is initialised once, on first use, and left initialised for the life of
the process; the reason it is unavailable is logged once, at DEBUG.

``cpu_percent`` is psutil's non-blocking reading (``interval=None``): the CPU use since the
previous call, so the very first reading in a process is 0.0 and the exporter's later ones
cover the time between two snapshots.
"""

from __future__ import annotations

import importlib
import logging
import threading
from types import ModuleType
from typing import Any

import psutil

__all__ = ["gpu_snapshot", "hardware_snapshot", "host_snapshot"]

log = logging.getLogger(__name__)

_process: psutil.Process | None = None


def host_snapshot() -> dict[str, Any]:
    """CPU, memory and this process's resident memory."""
    global _process
    if _process is None:
        _process = psutil.Process()
    memory = psutil.virtual_memory()
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "cpu_count": psutil.cpu_count() or 0,
        "memory_total_bytes": int(memory.total),
        "memory_used_bytes": int(memory.used),
        "memory_percent": float(memory.percent),
        "process_rss_bytes": int(_process.memory_info().rss),
    }


class _Nvml:
    """The NVML module once initialised, or None when there is none (decided once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tried = False
        self._module: ModuleType | None = None
        self._logged = False

    def reset(self) -> None:
        """Forget the outcome so the next call probes again (for tests)."""
        with self._lock:
            self._tried, self._module, self._logged = False, None, False

    def module(self) -> ModuleType | None:
        with self._lock:
            if not self._tried:
                self._tried = True
                self._module = self._init()
            return self._module

    def _init(self) -> ModuleType | None:
        try:
            nvml = importlib.import_module("pynvml")
            nvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded...
            self.log_once("NVML unavailable, reporting no GPUs: %r", exc)
            return None
        return nvml

    def log_once(self, message: str, *args: object) -> None:
        if not self._logged:
            self._logged = True
            log.debug(message, *args)


_NVML = _Nvml()


def gpu_snapshot() -> list[dict[str, Any]]:
    """One entry per GPU NVML sees; ``[]`` without pynvml, a driver or a GPU."""
    nvml = _NVML.module()
    if nvml is None:
        return []
    try:
        count = int(nvml.nvmlDeviceGetCount())
        return [_gpu(nvml, index) for index in range(count)]
    except Exception as exc:  # e.g. the driver went away; never break the snapshot
        _NVML.log_once("NVML query failed, reporting no GPUs: %r", exc)
        return []


def _gpu(nvml: ModuleType, index: int) -> dict[str, Any]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = nvml.nvmlDeviceGetName(handle)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        utilization: float | None = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:  # not supported on some devices (e.g. MIG instances)
        utilization = None
    return {
        "index": index,
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "memory_total_bytes": int(memory.total),
        "memory_used_bytes": int(memory.used),
        "utilization_percent": utilization,
    }


def hardware_snapshot() -> dict[str, Any]:
    """Host readings plus ``"gpus"``; never raises (a failed host reading is left out)."""
    try:
        snapshot = host_snapshot()
    except Exception as exc:  # psutil.Error, or a sandbox without /proc
        log.debug("host readings failed: %r", exc)
        snapshot = {}
    snapshot["gpus"] = gpu_snapshot()
    return snapshot
