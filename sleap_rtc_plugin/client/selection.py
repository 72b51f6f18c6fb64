"""Which worker to use: filters, auto-selection, and a readable summary of each.

Workers publish their capabilities as coordinator metadata (see worker/gpu.py):
``{"name", "hostname", "accelerator", "gpus": [{"name", "memory_total_mb",
"memory_free_mb"}], "labels": {...}, "job_types": [...]}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ..protocol.coordinator import PeerInfo


@dataclass(frozen=True)
class WorkerInfo:
    peer_id: str
    name: str
    hostname: str
    status: str
    accelerator: str
    gpu_name: str
    gpu_memory_free_mb: int
    gpu_memory_total_mb: int
    gpu_count: int
    labels: dict[str, str] = field(default_factory=dict)
    job_types: tuple[str, ...] = ("train", "track")
    #: The worker authenticates clients with the room secret (unknown: assume it does).
    needs_secret: bool = True

    @classmethod
    def from_peer(cls, peer: PeerInfo) -> "WorkerInfo":
        meta: dict[str, Any] = peer.metadata or {}
        gpus = [g for g in meta.get("gpus") or [] if isinstance(g, dict)]
        best = max(gpus, key=lambda g: g.get("memory_free_mb") or 0, default={})
        labels: dict[str, Any] = meta["labels"] if isinstance(meta.get("labels"), dict) else {}
        return cls(
            peer_id=peer.peer_id,
            name=str(meta.get("name") or meta.get("hostname") or peer.peer_id),
            hostname=str(meta.get("hostname") or ""),
            status=peer.status,
            accelerator=str(meta.get("accelerator") or ("cuda" if gpus else "cpu")),
            gpu_name=str(best.get("name") or ("CPU only" if not gpus else "GPU")),
            gpu_memory_free_mb=int(best.get("memory_free_mb") or 0),
            gpu_memory_total_mb=int(best.get("memory_total_mb") or 0),
            gpu_count=len(gpus),
            labels={str(k): str(v) for k, v in labels.items()},
            job_types=tuple(meta.get("job_types") or ("train", "track")),
            needs_secret=meta.get("needs_secret") is not False,
        )

    def summary(self) -> str:
        memory = f"{self.gpu_memory_free_mb / 1024:.1f}/{self.gpu_memory_total_mb / 1024:.1f} GiB free" if self.gpu_count else "no GPU"
        labels = " ".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"{self.name:<20} {self.gpu_name:<24} {memory:<20} {self.status:<10} {self.hostname} {labels}".rstrip()


def matches(worker: WorkerInfo, *, min_gpu_memory_mb: int | None = None, labels: dict[str, str] | None = None) -> bool:
    if min_gpu_memory_mb is not None and worker.gpu_memory_free_mb < min_gpu_memory_mb:
        return False
    return all(worker.labels.get(k) == v for k, v in (labels or {}).items())


def auto_select(workers: Iterable[WorkerInfo]) -> WorkerInfo | None:
    """The available worker with the most free GPU memory (CPU workers count as 0)."""
    available = [w for w in workers if w.status == "available"]
    return max(available, key=lambda w: (w.gpu_memory_free_mb, w.gpu_count, w.name), default=None)
