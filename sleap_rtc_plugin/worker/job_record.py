"""What a restarted worker needs to take back a Slurm job: ``slurm/job.json`` beside the job.

Its own module so the engine (which writes it) and :mod:`.adopt` (which reads it and
builds engines) do not import each other.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type-only edge: the engine calls in here, never the other way round at run time
    from .engine import JobEngine

JOB_RECORD = "job.json"


def write_job_record(engine: "JobEngine") -> None:
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
