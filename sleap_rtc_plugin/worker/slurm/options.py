"""``[worker.slurm]`` settings, read once into a typed value the executor carries."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import UserError

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class SlurmOptions:
    """How jobs are submitted. ``staging_dir`` must be on a filesystem the compute nodes
    mount at the same path (the job dir, progress files and models live there)."""

    staging_dir: Path | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    #: ``--gres`` for a job asking ``{gpus}`` GPUs; empty = no ``--gres`` (CPU partitions).
    gres: str = "gpu:{gpus}"
    gpus: int = 1
    cpus: int = 4
    mem_mb: int = 0
    time_limit: str = "24:00:00"
    extra_sbatch: tuple[str, ...] = ()
    python: str = field(default_factory=lambda: sys.executable)
    poll_interval: float = 5.0
    gpu_memory_mb: dict[str, int] = field(default_factory=dict)
    #: Extra environment for Slurm's own commands (``SLURM_CONF`` of a test cluster).
    command_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Any) -> "SlurmOptions":
        def get(key: str, default: Any = None) -> Any:
            value = settings.get(f"worker.slurm.{key}")
            return default if value is None else value

        extra = get("extra_sbatch", [])
        if isinstance(extra, str):
            extra = [extra]
        for line in extra:
            if "\n" in str(line):
                raise UserError(f"worker.slurm.extra_sbatch line {str(line)[:60]!r} spans lines; give one #SBATCH option per entry")
        staging = get("staging_dir")
        return cls(
            staging_dir=Path(staging).expanduser() if staging else None,
            partition=get("partition"), account=get("account"), qos=get("qos"),
            gres=str(get("gres", "gpu:{gpus}")), gpus=int(get("gpus", 1)), cpus=int(get("cpus", 4)),
            mem_mb=int(get("mem_mb", 0)), time_limit=str(get("time_limit", "24:00:00")),
            extra_sbatch=tuple(str(x) for x in extra), python=str(get("python") or sys.executable),
            poll_interval=float(get("poll_interval", 5.0)),
            gpu_memory_mb={str(k): int(v) for k, v in dict(get("gpu_memory_mb", {})).items()},
        )
