"""Terminal progress for a remote job: transfer speed, epochs, losses, ETA.

A rich live display on a terminal; plain one-line-per-change output otherwise (CI
logs, ``--no-progress``), so the same events read well in both places.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from .api import JobEvent


class ProgressDisplay:
    def __init__(self, job_id: str, *, plain: bool = False, console: Console | None = None):
        self.job_id = job_id
        self.console = console or Console(stderr=True)
        self.plain = plain or not self.console.is_terminal
        self._progress: Progress | None = None
        self._transfer_task = None
        self._train_task = None
        self._epoch_started = 0.0
        self._last_status = ""
        self.epochs_seen = 0

    def __enter__(self) -> "ProgressDisplay":
        if not self.plain:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def pause(self) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def update(self, event: JobEvent) -> None:
        data = event.data
        if event.kind == "status":
            line = f"[{data.get('state', '?')}] {data.get('message', '')}".rstrip()
            if line != self._last_status:
                self._last_status = line
                self._say(line)
        elif event.kind == "transfer":
            self._transfer(data)
        elif event.kind == "progress":
            self._training(data)
        elif event.kind == "checkpoint":
            self._say(f"checkpoint kept: {data.get('model')} epoch {data.get('epoch')} ({int(data.get('size') or 0) / 1e6:.1f} MB)")
        elif event.kind == "log" and self.plain:
            pass
        elif event.kind == "error":
            self._say(f"error: {data.get('message')}")

    def _transfer(self, data: dict[str, Any]) -> None:
        total, done = int(data.get("total") or 0), int(data.get("done") or 0)
        if self._progress is None:
            return  # plain mode: the "transferred" status line says how it went
        if self._transfer_task is None:
            self._transfer_task = self._progress.add_task(f"upload {data.get('name')}", total=total, info="")
        self._progress.update(self._transfer_task, completed=done)

    def _training(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        logs = event.get("logs") or {}
        if name == "epoch_begin":
            self._epoch_started = time.monotonic()
        elif name == "epoch_end":
            self.epochs_seen += 1
            epoch = int(event.get("epoch", self.epochs_seen - 1)) + 1
            loss, val = logs.get("train/loss", logs.get("train_loss")), logs.get("val/loss", logs.get("val_loss"))
            text = f"epoch {epoch}: loss {loss:.5f}" if isinstance(loss, (int, float)) else f"epoch {epoch}"
            if isinstance(val, (int, float)):
                text += f", val loss {val:.5f}"
            if self._epoch_started:
                text += f" ({time.monotonic() - self._epoch_started:.1f} s)"
            self._say(text)
        elif name == "train_begin":
            self._say(f"training {event.get('model') or event.get('what') or 'model'} on the worker")
        elif name == "train_end":
            self._say(f"training {event.get('model') or event.get('what') or 'model'} finished")
        elif "n_processed" in event:
            total = event.get("n_total") or 0
            if self._progress is not None:
                if self._train_task is None:
                    self._train_task = self._progress.add_task("predict", total=total, info="frames")
                self._progress.update(self._train_task, completed=event.get("n_processed", 0))
            elif total and event.get("n_processed") == total:
                self._say(f"predicted {total} frames")
