"""Keeping a job's entry in the project's job list up to date while the job runs.

The handle reports every event here; the entry changes in memory at once and reaches
the disk from one writer task, at most every ``interval`` seconds and once more at the
end, so a job printing thousands of log lines never blocks the loop on file writes.
A job list that cannot be written costs a warning, never the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
import zipfile
from pathlib import Path
from typing import Any

from ..protocol.job_state import JobState
from .jobs_store import JobList, JobRecord

log = logging.getLogger(__name__)


def package_models(package: Path) -> list[str]:
    """The model heads a SLEAP training package holds (one ``<head>.yaml`` each)."""
    try:
        with zipfile.ZipFile(package) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return []
    return sorted({Path(n).stem for n in names if n.endswith((".yaml", ".json")) and "/" not in n and Path(n).stem not in ("jobs", "jobs.yaml")})


class JobRecorder:
    def __init__(self, store: JobList, record: JobRecord, *, interval: float = 0.25):
        self.store = store
        self.record = record
        self.interval = interval
        self._dirty = asyncio.Event()
        self._closing = asyncio.Event()
        self._epoch_clock: tuple[float, int] | None = None  # (time, epoch) of the first live epoch_end seen
        self._task = asyncio.ensure_future(self._write_loop())

    def observe(self, kind: str, data: dict[str, Any], state: JobState) -> None:
        """Fold one job event into the entry."""
        r = self.record
        before = (r.state, r.epoch, r.position, r.worker_id)
        r.state = state.value
        if kind == "status":
            r.message = str(data.get("message") or r.message)
            if data.get("position") is not None:
                r.position = data.get("position")
            if data.get("worker"):
                r.worker_id = str(data["worker"])
            if data.get("worker_name"):
                r.worker_name = str(data["worker_name"])
            tail = (data.get("log_tail") or [])
            if isinstance(tail, list) and tail and not r.log_tail:
                r.log_tail = [str(x) for x in tail][-len(tail):]
        elif kind == "progress":
            self._progress(data)
        elif kind == "log":
            r.add_log(str(data.get("line", "")))
        elif kind == "error":
            r.error_code, r.message, r.finished = str(data.get("code", "")), str(data.get("message", "")), time.time()
        elif kind == "result":
            outcome = data.get("outcome")
            if outcome is not None and not outcome.detached:
                r.fetched, r.finished = True, time.time()
                r.files = [str(p) for p in outcome.files]
        if (r.state, r.epoch, r.position, r.worker_id) != before or kind in ("result", "error", "log"):
            self._dirty.set()

    def _progress(self, event: dict[str, Any]) -> None:
        r = self.record
        if event.get("event") != "epoch_end" or not isinstance(event.get("epoch"), int):
            return
        r.epoch = int(event["epoch"]) + 1
        total = event.get("max_epochs")
        r.epochs = int(total) if isinstance(total, int) else r.epochs
        if event.get("replayed"):
            return
        now = time.monotonic()
        if self._epoch_clock is None or r.epoch <= self._epoch_clock[1]:
            self._epoch_clock = (now, r.epoch)
        elif r.epochs:
            t0, e0 = self._epoch_clock
            r.eta_s = (now - t0) / (r.epoch - e0) * max(r.epochs - r.epoch, 0)

    async def _write_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            snapshot = copy.deepcopy(self.record)
            try:
                await asyncio.to_thread(self.store.put, snapshot)
            except OSError as exc:
                log.warning("job %s: could not update the project's job list (%s)", snapshot.job_id, exc)
            if self._closing.is_set() and not self._dirty.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.interval)

    async def close(self) -> None:
        """Write the final entry and stop."""
        self._closing.set()
        self._dirty.set()
        await self._task
