"""What a queued job asks of a worker, whether a worker offers it, and who may follow the job."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from typing import Any

from ..protocol.base import ProtocolError
from .jobstore import QueuedJob
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


def check_owner(job: QueuedJob, owner: str | None, ref: str | None) -> None:
    """A job submitted with an owner hash is followed or cancelled only by whoever
    holds the secret, whichever connection it comes from."""
    if job.owner_hash is None:
        return
    given = hashlib.sha256((owner or "").encode()).hexdigest()
    if owner is None or not hmac.compare_digest(given, job.owner_hash):
        raise ProtocolError(
            "not_owner",
            f"job {job.job_id} belongs to another client; use the credential saved with the job (the owner secret its submitting client stored) or ask the administrator",
            ref=ref,
        )
