"""GpuBlock: a softmax and an L2 norm on the GPU it was allocated, or on the CPU.

It reads ``context.allocation_info["gpus"]`` (the runtime has already exported them as
``CUDA_VISIBLE_DEVICES``, so the first allocated GPU is ``cuda:0``), uses PyTorch when it is
importable and CUDA is available, and otherwise falls back to PyTorch on the CPU, NumPy, or
pure Python. Every output says which device and backend computed it.

Input ``{"vector": [1.0, 2.0, 3.0]}`` → output
``{"softmax": [...], "norm": 3.74..., "device": "cuda:0" | "cpu", "backend": "torch" | ...}``.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from aios_instance import OnDataResult, PreProcessResult

try:  # optional: the block runs (on the CPU) without PyTorch
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

try:
    import numpy as np
except ImportError:  # pragma: no cover - depends on the environment
    np = None


def pick_device(gpus: list[Any], wanted: str = "auto") -> tuple[str, str]:
    """(backend, device): CUDA only when GPUs were allocated (or ``wanted == "cuda"``)."""
    cuda = torch is not None and torch.cuda.is_available()
    if cuda and wanted != "cpu" and (gpus or wanted == "cuda"):
        return "torch", "cuda:0"  # CUDA_VISIBLE_DEVICES renumbers the allocated GPUs from 0
    if torch is not None:
        return "torch", "cpu"
    return ("numpy" if np is not None else "python"), "cpu"


def compute(vector: list[float], backend: str, device: str) -> tuple[list[float], float]:
    """Softmax and L2 norm of ``vector`` with the chosen backend."""
    if backend == "torch":
        t = torch.tensor(vector, dtype=torch.float64, device=device)
        return torch.softmax(t, dim=0).cpu().tolist(), float(torch.linalg.vector_norm(t))
    if backend == "numpy":
        a = np.asarray(vector, dtype=np.float64)
        e = np.exp(a - a.max())
        return (e / e.sum()).tolist(), float(np.linalg.norm(a))
    top = max(vector)
    exps = [math.exp(v - top) for v in vector]
    total = sum(exps)
    return [e / total for e in exps], math.sqrt(sum(v * v for v in vector))


class GpuBlock:
    def __init__(self, context):
        self.context = context
        self.gpus = list(context.allocation_info.get("gpus") or [])
        wanted = context.block_init_settings.get("device", "auto")
        self.backend, self.device = pick_device(self.gpus, wanted)

    def on_preprocess(self, packet):
        try:
            data = json.loads(packet.data)
            vector = [float(v) for v in data["vector"]]
        except (ValueError, KeyError, TypeError) as exc:
            return False, f'expected {{"vector": [numbers]}}: {exc}'
        if not vector:
            return False, "vector is empty"
        return True, [PreProcessResult(packet=packet, extra_data={"vector": vector})]

    def on_data(self, entry):
        softmax, norm = compute(entry.extra_data["vector"], self.backend, self.device)
        output = {"softmax": softmax, "norm": norm, "device": self.device, "backend": self.backend}
        return True, OnDataResult(output=output)

    def health(self):
        return {
            "status": "healthy",
            "device": self.device,
            "backend": self.backend,
            "allocated_gpus": self.gpus,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def management(self, action, data):
        if action == "device":
            return self.health()
        return {"message": f"Unknown action: {action}"}


if __name__ == "__main__":
    from aios_instance import Block

    Block(GpuBlock).run()
