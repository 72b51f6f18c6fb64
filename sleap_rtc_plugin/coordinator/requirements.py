"""What a queued job asks of a worker, and whether a worker offers it."""

from __future__ import annotations

import fnmatch
from typing import Any

from .presence import PeerEntry, max_free_gpu_mb


def requirements_met(entry: PeerEntry, req: dict[str, Any]) -> bool:
    """Does this worker offer what the job asks for? Label values are fnmatch globs."""
    worker_id = req.get("worker_id")
    if worker_id and entry.peer_id != worker_id:
        return False
    gpus = entry.metadata.get("gpus")
    n_gpus = len(gpus) if isinstance(gpus, list) else 0
    if int(req.get("gpu_count") or 0) > n_gpus:
        return False
    if int(req.get("min_gpu_memory_mb") or 0) > max_free_gpu_mb(entry.metadata):
        return False
    have = entry.metadata.get("labels")
    have = have if isinstance(have, dict) else {}
    for key, pattern in (req.get("labels") or {}).items():
        value = have.get(key)
        if value is None or not fnmatch.fnmatchcase(str(value), str(pattern)):
            return False
    return True
