"""A remote job's stages in the user's words: one line and one bar per stage.

packaging → uploading → queued (position) → training epoch N/M (ETA) or predicting
frames → downloading → done. Each stage owns the bar while it runs and leaves it
full when it ends, so a finished 0.3 MB upload never reads "0 / 1 MB". Sizes are
MB (10^6 bytes) everywhere. Transport details (the ICE path, direct/data channel,
cache) go to the log, never to the dialog.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from qtpy import QtWidgets

logger = logging.getLogger(__name__)

TRAIN_STATES = {"running", "training", "resuming"}
QUEUE_STATES = {"queued", "dispatched"}


def eta_words(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"about {hours} h {minutes:02d} min left"
    return f"about {minutes} min {secs:02d} s left" if minutes else f"about {secs} s left"


def mb(n: float) -> str:
    """Megabytes (10^6 bytes) always; two decimals below 0.1 MB so a small file is not "0.0 MB"."""
    return f"{n / 1e6:.2f} MB" if 0 < n < 100_000 else f"{n / 1e6:.1f} MB"


class StageView(QtWidgets.QWidget):
    """The stage name, its bar, and the one-line detail below them."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.stage = QtWidgets.QLabel("")
        self.stage.setStyleSheet("font-weight: bold")
        self.bar = QtWidgets.QProgressBar()
        self.bar.setTextVisible(True)
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.stage)
        row.addWidget(self.bar, 1)
        self.setVisible(False)

    def show_stage(self, name: str, *, done: float | None = None, total: float | None = None, text: str = "") -> None:
        """``done``/``total`` in any unit (bytes, epochs, frames); no total: a busy bar."""
        self.setVisible(True)
        self.stage.setText(name)
        if total:
            scale = 1000.0 / total
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(min(done or 0, total) * scale))
        else:
            self.bar.setRange(0, 0)
        self.bar.setFormat(text.replace("%", "%%"))

    def finish(self, name: str, text: str = "") -> None:
        self.show_stage(name, done=1, total=1, text=text)


class StageTracker:
    """Reads ``JobEvent``s and tells ``view`` and ``status`` (a QLabel) what is happening now."""

    def __init__(self, view: StageView, status: QtWidgets.QLabel, kind: str = "train"):
        self.view = view
        self.status = status
        self.kind = kind
        self.worker = ""
        self.path_words = ""
        self.stage = ""
        self._upload: dict[str, Any] = {}
        self._train_started = 0.0
        self._epochs_done = 0
        self.sent_words: list[str] = []
        #: Every (stage, status line) shown, in order: what the user saw, for logs and tests.
        self.history: list[tuple[str, str]] = []

    # -- stages the dialog starts itself -----------------------------------------
    def packaging(self, text: str) -> None:
        self._set("Packaging", text)
        self.view.show_stage("Packaging", text=text)

    def packaging_progress(self, done: int, total: int) -> None:
        self.view.show_stage("Packaging", done=done, total=total, text=f"{done} of {total} frames")

    def done(self, text: str) -> None:
        self._set("Done", text)
        self.view.finish("Done", "100%")

    def failed(self, text: str) -> None:
        self._set("Stopped", text)
        self.view.setVisible(False)

    # -- events ---------------------------------------------------------------------
    def apply(self, event: Any) -> None:
        data = event.data or {}
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(data)

    def _set(self, stage: str, text: str) -> None:
        self.stage = stage
        self.status.setText(text)
        self.history.append((stage, text))

    def _on_status(self, data: dict) -> None:
        state, message = data.get("state", ""), data.get("message", "")
        if state == "connecting":
            self.worker = self._worker_name(message) or self.worker
            self._set("Connecting", f"Connecting to {self.worker or 'the worker'}…")
            self.view.show_stage("Connecting")
        elif state == "connected":
            logger.info("link: %s", message)
            if isinstance(data.get("path"), dict):
                from sleap_rtc_plugin.client.wording import path_in_words

                self.path_words = path_in_words(data["path"])
            self._set("Connecting", (self.path_words or "Connected to the worker").capitalize() + ".")
        elif state == "transferring":
            self._upload = {"started": time.monotonic(), "total": 0, "done": 0}
            self._set("Uploading", f"Uploading to {self.worker or 'the worker'}…")
            self.view.show_stage("Uploading", done=0, total=1, text="0.0 MB")
        elif state == "transferred":
            self._end_upload(data)
        elif state in QUEUE_STATES:
            position = data.get("position")
            where = f"position {int(position) + 1} in the queue" if isinstance(position, int) else "in the queue"
            text = f"Queued: {where}." if state == "queued" else f"Starting on {self.worker or 'a worker'}…"
            self._set("Queued", text)
            self.view.show_stage("Queued", text=where if state == "queued" else "starting")
        elif state in TRAIN_STATES:
            if self.stage not in ("Training", "Predicting"):
                name = "Training" if self.kind == "train" else "Predicting"
                self._set(name, f"{name} on {self.worker or 'the worker'}…")
                self.view.show_stage(name, text="starting")
        elif state in ("succeeded", "finished"):
            self._set("Downloading", f"The job finished on {self.worker or 'the worker'}; fetching the results…")
            self.view.show_stage("Downloading", text="waiting for the results")
        elif state == "receiving":
            self._set("Downloading", message[:1].upper() + message[1:] + "…" if message else "Downloading the results…")
            self.view.show_stage("Downloading", text=message.split(" (")[-1].rstrip(")") if "(" in message else "")
        elif state in ("stopping", "cancelling"):
            self._set(self.stage, "Stopping early: the best model so far is kept…" if state == "stopping" else "Cancelling the job…")
        else:
            logger.info("job status %s: %s", state, message)

    @staticmethod
    def _worker_name(message: str) -> str:
        if message.startswith("connecting to "):
            return message[len("connecting to "):].split(" (attempt")[0]
        return ""

    def _on_transfer(self, data: dict) -> None:
        total = float(data.get("total") or 0)
        done = float(data.get("done", data.get("sent", 0)) or 0)
        if data.get("direction") == "download":
            self.view.show_stage("Downloading", done=done, total=total, text=f"{mb(done)} of {mb(total)}")
            return
        self._upload.update(total=total, done=done, name=data.get("name") or "the package")
        self._upload.setdefault("started", time.monotonic())
        rate = float(data.get("rate_mbps") or 0)
        text = f"{mb(done)} of {mb(total)}" + (f", {rate:.1f} MB/s" if rate else "")
        self.stage = "Uploading"
        self.view.show_stage("Uploading", done=done, total=total or 1, text=text)

    def _end_upload(self, data: dict) -> None:
        """The upload's bar ends full, and one sentence says what happened."""
        up = self._upload
        total = float(up.get("total") or 0)
        seconds = max(time.monotonic() - float(up.get("started") or time.monotonic()), 0.0)
        to = self.worker or "the worker"
        if data.get("via") == "cache":
            words = f"{up.get('name', 'the file')} was already on {to}: nothing to send"
        elif data.get("via") == "shared":
            words = f"{to} read {up.get('name', 'the file')} from the shared disk"
        else:
            speed = total / 1e6 / seconds if seconds > 0 else 0.0
            rate = (f" ({speed:.2f} MB/s)" if speed < 0.1 else f" ({speed:.1f} MB/s)") if speed and total else ""
            words = f"sent {mb(total)} to {to} in {seconds:.1f} s{rate}"
        self.sent_words.append(words)
        self._set("Uploading", words[:1].upper() + words[1:] + ".")
        self.view.finish("Uploaded", mb(total) if total else "done")

    def _on_progress(self, data: dict) -> None:
        event = data.get("event")
        if "n_processed" in data:
            n, total = int(data.get("n_processed") or 0), int(data.get("n_total") or 0)
            eta = data.get("eta")
            text = f"{n} / {total} frames" + (f", {eta_words(float(eta))}" if isinstance(eta, (int, float)) and n < total else "")
            self._set("Predicting", f"Predicting on {self.worker or 'the worker'}: {text}.")
            self.view.show_stage("Predicting", done=n, total=total or None, text=text)
            return
        model = data.get("model") or "model"
        n_models = int(data.get("n_models") or 1)
        which = f"{model} ({int(data.get('model_index') or 0) + 1} of {n_models})" if n_models > 1 else str(model)
        max_epochs = int(data.get("max_epochs") or 0)
        if event == "train_begin":
            self._train_started, self._epochs_done = time.monotonic(), 0
            self._set("Training", f"Training {which} on {self.worker or 'the worker'}…")
            self.view.show_stage("Training", done=0, total=max_epochs or None, text=f"epoch 0/{max_epochs}" if max_epochs else "starting")
        elif event == "epoch_end":
            self._epochs_done += 1
            epoch = data["epoch"] + 1 if isinstance(data.get("epoch"), int) else self._epochs_done
            if not self._train_started:
                self._train_started = time.monotonic()
            text = f"epoch {epoch}/{max_epochs}" if max_epochs else f"epoch {epoch}"
            if max_epochs and epoch < max_epochs and self._epochs_done:
                per_epoch = (time.monotonic() - self._train_started) / self._epochs_done
                text += f", {eta_words(per_epoch * (max_epochs - epoch))}"
            self._set("Training", f"Training {which}: {text}.")
            self.view.show_stage("Training", done=epoch, total=max_epochs or None, text=text)
        elif event == "train_end":
            self._set("Training", f"Training {which} finished.")
            self.view.finish("Training", f"epoch {max_epochs}/{max_epochs}" if max_epochs else "done")

    def _on_log(self, data: dict) -> None:
        logger.info("worker: %s", data.get("line", ""))
