"""Terminal progress for a remote job: transfer speed, epochs, losses, ETA.

A rich live display on a terminal; plain one-line-per-change output otherwise (CI
logs, ``--no-progress``), so the same events read well in both places.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from .outcome import JobEvent
from .wording import path_in_words


def eta(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


log = logging.getLogger(__name__)


class ProgressDisplay:
    def __init__(self, job_id: str, *, plain: bool = False, console: Console | None = None):
        self.job_id = job_id
        self.console = console or Console(stderr=True)
        self.plain = plain or not self.console.is_terminal
        self._progress: Progress | None = None
        self._transfer_task: TaskID | None = None
        self._train_task: TaskID | None = None
        self._epoch_started = 0.0
        self._last_status = ""
        self._train_started = 0.0
        self.epochs_seen = 0
        self._batch_losses: list[float] = []

    def __enter__(self) -> "ProgressDisplay":
        if not self.plain:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(), console=self.console, transient=False,
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
            if data.get("state") in ("failed", "cancelled"):
                return  # the command's own error line says it, once
            if data.get("state") == "transferred":
                self._end_transfer()
            message = data.get("message", "")
            if data.get("state") == "connected" and isinstance(data.get("path"), dict):
                log.info("job %s: %s", self.job_id, message)  # the candidate pair and why: for -v and logs
                message = path_in_words(data["path"])
            line = f"[{data.get('state', '?')}] {message}".rstrip()
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
        # "error" events are not shown: the command ends with that error, printed once.

    def _end_transfer(self) -> None:
        """A finished upload's bar leaves the screen; its status line stays."""
        if self._progress is not None and self._transfer_task is not None:
            self._progress.remove_task(self._transfer_task)
        self._transfer_task = None

    def _transfer(self, data: dict[str, Any]) -> None:
        total, done = int(data.get("total") or 0), int(data.get("done") or 0)
        if self._progress is None:
            return  # plain mode: the "transferred" status line says how it went
        if self._transfer_task is None:
            self._transfer_task = self._progress.add_task(f"upload {data.get('name')}", total=total, info="")
        info = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB, {data.get('rate_mbps', 0):.1f} MB/s"
        self._progress.update(self._transfer_task, completed=done, info=info)

    def _training(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        logs = event.get("logs") or {}
        if name == "epoch_begin":
            self._epoch_started = time.monotonic()
            self._batch_losses = []
        elif name == "batch_end":
            if isinstance(logs.get("loss"), (int, float)):
                self._batch_losses.append(float(logs["loss"]))
        elif name == "epoch_end":
            self.epochs_seen += 1
            epoch = int(event.get("epoch", self.epochs_seen - 1)) + 1
            total = event.get("max_epochs")
            # sleap-nn reports an epoch's train/loss only after its callbacks ran (missing at
            # epoch 1, the previous epoch's later): this epoch's batch losses are the truth.
            loss = sum(self._batch_losses) / len(self._batch_losses) if self._batch_losses else logs.get("train/loss", logs.get("train_loss"))
            self._batch_losses = []
            val = logs.get("val/loss", logs.get("val_loss"))
            text = f"epoch {epoch}" + (f"/{total}" if total else "")
            if isinstance(loss, (int, float)):
                text += f": loss {loss:.5f}"
            if isinstance(val, (int, float)):
                text += f", val loss {val:.5f}"
            if self._epoch_started:
                text += f" ({time.monotonic() - self._epoch_started:.1f} s)"
            if not self._train_started:
                self._train_started = time.monotonic()
            elif total and epoch < total:
                per_epoch = (time.monotonic() - self._train_started) / max(self.epochs_seen - 1, 1)
                text += f", ETA {eta(per_epoch * (total - epoch))}"
            self._say(text)
        elif name == "train_begin":
            self._train_started = 0.0
            self.epochs_seen = 0
            self._say(f"training {event.get('model') or event.get('what') or 'model'} on the worker")
        elif name == "train_end":
            self._say(f"training {event.get('model') or event.get('what') or 'model'} finished")
        elif "n_processed" in event:
            total = event.get("n_total") or 0
            if self._progress is not None:
                if self._train_task is None:
                    self._train_task = self._progress.add_task("predict", total=total, info="")
                done = event.get("n_processed", 0)
                self._progress.update(self._train_task, completed=done, info=f"{done}/{total} frames")
            elif total and event.get("n_processed") == total:
                self._say(f"predicted {total} frame{'' if total == 1 else 's'}")
