"""Finish a model whose training was complete when its attempt was cut short.

A queued training job killed after its last epoch's checkpoint reached the client, but
before ``succeeded``, is requeued and resumed from that checkpoint. sleap-nn then has
zero epochs left to train: it sets up the run dir (``training_config.yaml``), trains
nothing, never writes ``best.ckpt`` and dies opening it. That is no fault of the job and
the finished model is in hand, so the worker completes the run dir sleap-nn set up with
the checkpoint as ``best.ckpt`` and delivers it as the trained model -- rather than
failing the job (which used to count as the job's own error and lose the model).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..jobspec.sleapnn_args import inside


def is_final(epoch: int | None, max_epochs: int | None) -> bool:
    """A checkpoint of (0-based) ``epoch`` holds the whole training of ``max_epochs``."""
    return epoch is not None and bool(max_epochs) and epoch + 1 >= int(max_epochs or 0)


def complete_run_dir(output_dir: Path, run_name: str, checkpoint: Path, started: float) -> Path | None:
    """The run dir sleap-nn set up for ``run_name`` in this run (``training_config.yaml``
    written since ``started``, no ``best.ckpt``), with ``checkpoint`` installed as its
    ``best.ckpt``; None when sleap-nn did not get that far (a real failure)."""
    pattern = re.compile(re.escape(run_name) + r"(-\d+)?")
    candidates = [
        d for d in output_dir.glob("*")
        if d.is_dir() and pattern.fullmatch(d.name) and inside(output_dir, d)
        and (d / "training_config.yaml").is_file() and not (d / "best.ckpt").exists()
        and (d / "training_config.yaml").stat().st_mtime >= started - 1
    ]
    if not candidates:
        return None
    run_dir = max(candidates, key=lambda d: (d / "training_config.yaml").stat().st_mtime)
    partial = run_dir / ".best.ckpt.partial"
    shutil.copyfile(checkpoint, partial)
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, run_dir / "best.ckpt")
    return run_dir
