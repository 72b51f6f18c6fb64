"""How one listed remote job reads in the Remote Jobs panel: plain words, no Qt.

Kept apart from the panel so the wording is one function per column, testable without
a window, and the same for every row whatever the job went through.
"""

from __future__ import annotations

import time
from typing import Any

from ..protocol.job_state import JobState as S

COLUMNS = ("Job", "Kind", "Models", "Worker", "State", "Submitted", "Finished")


def when(timestamp: float | None, now: float | None = None) -> str:
    """``14:03`` today, ``Nov 28 14:03`` on another day, blank when unknown."""
    if not timestamp:
        return ""
    now = now or time.time()
    local, today = time.localtime(timestamp), time.localtime(now)
    same_day = local[:3] == today[:3]
    return time.strftime("%H:%M" if same_day else "%b %d %H:%M", local)


def duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def state_text(record: Any) -> str:
    """``queued: position 2 in the queue``, ``running: epoch 3/10, ETA 1 min 05 s``, ``finished: results installed``…"""
    state = record.state
    if state == S.QUEUED:
        return "queued" + (f": position {int(record.position) + 1} in the queue" if isinstance(record.position, int) else "")
    if state in ("reserved",):
        return "starting"
    if state == S.DISPATCHED:
        return "connecting to " + (record.worker_name or record.worker_id or "a worker")
    if state == "transferring":
        return "uploading"
    if state in (S.ACCEPTED, S.RUNNING, S.STOPPING):
        text = "stopping early" if state == "stopping" else "running"
        if record.epoch:
            text += f": epoch {record.epoch}" + (f"/{record.epochs}" if record.epochs else "")
        if record.eta_s and state == S.RUNNING:
            text += f", ETA {duration(record.eta_s)}"
        return text
    if state in (S.SUCCEEDED, S.RESULTS_READY):
        return "finished: results waiting on the worker"
    if state == S.ACKNOWLEDGED:
        return "finished: results installed" if record.fetched else "finished"
    if state == S.FAILED:
        return "failed" + (f": {record.message}" if record.message else "")
    if state == S.CANCELLED:
        return "cancelled"
    return state


def row(record: Any) -> list[str]:
    return [
        record.job_id,
        "training" if record.kind == "train" else "inference",
        ", ".join(record.models),
        record.worker_name or record.worker_id,
        state_text(record),
        when(record.submitted),
        when(record.finished),
    ]


def log_text(record: Any) -> str:
    """What Show log shows: the worker's last sleap-nn lines, and the error if it failed."""
    text = "\n".join(record.log_tail) or "(the worker has sent no log lines for this job yet)"
    if record.state == "failed" and record.message:
        text += f"\n\n{record.error_code or 'failed'}: {record.message}"
    return text
