"""What a restarted worker needs to take back a Slurm job: ``slurm/job.json`` beside the job.

Its own module so the engine (which writes it) and :mod:`.adopt` (which reads it and
builds engines) do not import each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from .package import JobSpec

JOB_RECORD = "job.json"


class RecordedJob(Protocol):
    """What the record keeps of a :class:`~.engine.JobEngine` (which calls in here)."""

    job_id: str
    kind: str
    job_dir: Path
    spec: JobSpec | None
    adopt_meta: dict[str, Any]
    options: dict[str, Any]
    overrides: list[str]
    model_overrides: dict[str, list[str]]
    finish_from: dict[str, Path]


def write_job_record(engine: RecordedJob) -> None:
    spec = engine.spec
    assert spec is not None
    record = {
        "job_id": engine.job_id, "kind": engine.kind, **engine.adopt_meta,
        "options": engine.options, "overrides": engine.overrides, "model_overrides": engine.model_overrides,
        "finish_from": {head: str(path) for head, path in engine.finish_from.items()},
        "run_names": {m.head: m.run_name for m in spec.models},
    }
    path = engine.job_dir / "slurm" / JOB_RECORD
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(JOB_RECORD + ".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
