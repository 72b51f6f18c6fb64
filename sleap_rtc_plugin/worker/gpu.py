"""What this worker can do: GPUs (via NVML), versions, supported job types.

The coordinator shows this to clients choosing a worker, so a CPU-only or
driverless machine must still answer cleanly: NVML missing or failing means
``{"accelerator": "cpu", "gpus": []}`` and one debug line, never a crash.
NVML is used rather than torch because importing torch takes seconds and
reserves GPU memory in the service process.
"""

from __future__ import annotations

import importlib
import logging
import platform
import socket
import sys
import warnings
from importlib import metadata
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

JOB_TYPES = ["train", "track"]
_VERSION_PACKAGES = ("sleap-nn", "sleap-io", "torch", "sleap-rtc-plugin")


def _load_nvml() -> ModuleType | None:
    """Import ``pynvml`` (from nvidia-ml-py); the seam tests replace."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module("pynvml")
    except ImportError:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cuda_version(nvml: ModuleType) -> str | None:
    try:
        v = int(nvml.nvmlSystemGetCudaDriverVersion())
    except Exception:
        return None
    return f"{v // 1000}.{(v % 1000) // 10}"


def probe_gpus(nvml: ModuleType | None = None) -> dict:
    """GPU part of the capabilities; ``cpu`` when NVML is absent or fails."""
    nvml = nvml if nvml is not None else _load_nvml()
    cpu: dict[str, Any] = {"accelerator": "cpu", "gpus": [], "driver": None, "cuda": None}
    if nvml is None:
        logger.debug("pynvml not installed; reporting CPU only")
        return cpu
    try:
        nvml.nvmlInit()
    except Exception as exc:
        logger.debug("NVML unavailable (%s); reporting CPU only", exc)
        return cpu
    try:
        gpus = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                {
                    "index": index,
                    "name": _text(nvml.nvmlDeviceGetName(handle)),
                    "memory_total_mb": int(mem.total) // (1024 * 1024),
                    "memory_free_mb": int(mem.free) // (1024 * 1024),
                }
            )
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = _cuda_version(nvml)
    except Exception as exc:
        logger.warning("NVML query failed (%s); reporting CPU only", exc)
        return cpu
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
    if not gpus:
        return {**cpu, "driver": driver, "cuda": cuda}
    return {"accelerator": "cuda", "gpus": gpus, "driver": driver, "cuda": cuda}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSION_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def capabilities(nvml: ModuleType | None = None) -> dict:
    """Everything a worker advertises when it registers.

    Shape: ``{"accelerator", "gpus": [{"index", "name", "memory_total_mb",
    "memory_free_mb"}], "driver", "cuda", "hostname", "platform", "python",
    "versions", "job_types"}``. Blocking (NVML); call via ``asyncio.to_thread``.
    """
    caps = probe_gpus(nvml)
    caps.update(
        {
            "hostname": socket.gethostname(),
            "platform": sys.platform,
            "python": platform.python_version(),
            "versions": package_versions(),
            "job_types": list(JOB_TYPES),
        }
    )
    return caps
