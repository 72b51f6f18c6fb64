"""What a job hands its caller: the events it emits and the outcome it ends with.

Kept apart from the job handle so that the modules that install results (``results.py``,
``fetch.py``) and show progress (``progress.py``) need not import the handle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

EventKind = Literal["status", "transfer", "progress", "log", "checkpoint", "result", "error"]


@dataclass(frozen=True)
class JobEvent:
    kind: EventKind
    data: dict[str, Any]


@dataclass
class JobOutcome:
    job_id: str
    kind: Literal["train", "track"]
    worker_id: str
    model_dirs: list[Path] = field(default_factory=list)
    predictions: Path | None = None
    prediction_files: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    detached: bool = False

