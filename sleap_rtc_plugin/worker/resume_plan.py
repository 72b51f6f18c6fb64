"""How a queued training attempt uses the checkpoints its client handed over.

Every model of the package with a relayed checkpoint resumes from it (a top-down job
hands over one per model: the centroid model finished on attempt 1 is not retrained).
A checkpoint of a model's final epoch leaves sleap-nn nothing to train; that model is
finished from the checkpoint (:mod:`.finish`) rather than failed. Models without one
train from scratch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from .finish import is_final
from .package import ModelSpec
from .runner import hydra_value

log = logging.getLogger(__name__)


class Handed(Protocol):
    path: Path
    model: str
    epoch: int | None


class Plannable(Protocol):
    job_id: str
    overrides: list[str]
    model_overrides: dict[str, list[str]]
    finish_from: dict[str, Path]


def plan_resume(engine: Plannable, models: Sequence[ModelSpec], handed: Mapping[str, Handed], attempt: int) -> list[str]:
    """Add ``save_last`` (what the relay sends) and a resume per handed-over model; return
    the heads that resume. A checkpoint for a model not in the package is ignored."""
    engine.overrides.append("trainer_config.model_ckpt.save_last=true")
    by_head = {m.head: m for m in models}
    resumed = []
    for head, resume in handed.items():
        model = by_head.get(head)
        if model is None:
            log.warning("job %s: checkpoint is for model %s, not in this package (%s); ignored", engine.job_id, head, ", ".join(by_head))
            continue
        engine.model_overrides.setdefault(head, []).append(f"trainer_config.resume_ckpt_path={hydra_value(resume.path.resolve().as_posix())}")
        # Also where epochs are left: if none of them beats the checkpoint, sleap-nn writes no
        # best.ckpt and dies opening it; the runner then delivers the checkpoint (finish.py).
        engine.finish_from[head] = resume.path
        if is_final(resume.epoch, model.max_epochs):
            log.info("job %s attempt %d: %s finished training on an earlier attempt (epoch %s of %s); delivering it from the relayed checkpoint",
                     engine.job_id, attempt, head, resume.epoch, model.max_epochs)
        else:
            log.info("job %s attempt %d: resuming %s from the relayed checkpoint (epoch %s)", engine.job_id, attempt, head, resume.epoch)
        resumed.append(head)
    return resumed
