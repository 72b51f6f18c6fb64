"""A stand-in for the ``pynvml`` module: NVIDIA GPUs cannot run here, NVML is the boundary."""

from __future__ import annotations

import types


def fake_nvml(devices, *, init_error=None, query_error=None):
    class NVMLError(Exception):
        pass

    m = types.ModuleType("pynvml")
    calls = []

    def init():
        calls.append("init")
        if init_error:
            raise NVMLError(init_error)

    def count():
        if query_error:
            raise NVMLError(query_error)
        return len(devices)

    m.nvmlInit = init
    m.nvmlShutdown = lambda: calls.append("shutdown")
    m.nvmlDeviceGetCount = count
    m.nvmlDeviceGetHandleByIndex = lambda i: devices[i]
    m.nvmlDeviceGetName = lambda h: h["name"]
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=h["total"], free=h["free"], used=h["total"] - h["free"])
    m.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    m.nvmlSystemGetCudaDriverVersion = lambda: 12040
    m.calls = calls
    return m


def gpus(*memory_gb: float, name: str = "NVIDIA A100-SXM4-40GB") -> types.ModuleType:
    """A fake NVML with one GPU per entry, each with that many GiB free of 40."""
    return fake_nvml([{"name": name, "total": 40 * 2**30, "free": int(gb * 2**30)} for gb in memory_gb])
