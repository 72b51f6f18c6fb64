"""What Train remotely… and Track remotely… share: SLEAP's own ``LearningDialog``
with a "Remote worker" section added and its Run button sending the job away.

Subclassing keeps SLEAP's profile pipeline forms, model tabs, frame targets and
validation exactly as users know them; only the action changes.

Closing the dialog never silently cancels: with a job running it asks (closing.py),
and "Keep running remotely" detaches -- once the package is on the worker, so a
half-sent upload finishes first -- leaving the job and its results on the worker.
Reopening the dialog follows the detached job again and installs its results.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy import QtWidgets
from sleap.gui.learning.dialog import LearningDialog

from ..guards import project_problem
from ..qt_async import spawn
from .closing import ask_keep_or_cancel
from .connection import ConnectionPanel
from .queue_options import QueueOptionsBox
from .errors import describe, is_user_cancel, show_error

#: Stages during which the package is not yet whole on the worker: detaching waits.
SENDING_STAGES = frozenset({"", "Packaging", "Connecting", "Uploading"})


@dataclass
class DetachedJob:
    """A job this dialog left running on its worker: enough to follow it again."""

    job_id: str
    kind: str
    spec: Any
    project_dir: Path
    request: Any
    worker_name: str

logger = logging.getLogger(__name__)


class RemoteLearningDialog(LearningDialog):
    RUN_TEXT = "Run remotely"
    TITLE = "Remote"

    def __init__(self, mode: str, window: Any, *, defaults: Any = None):
        super().__init__(mode, window.state["filename"], window.labels, parent=window)
        self.main_window = window
        self.setWindowTitle(f"{self.TITLE} - {self.windowTitle()}")
        self.panel = ConnectionPanel(self, defaults=defaults)
        self.layout().insertWidget(1, self.panel)
        self.queue_box = QueueOptionsBox(self)  # issue 17.1: the room's queue instead of a chosen worker
        self.layout().insertWidget(2, self.queue_box)
        self.run_button.setText(self.RUN_TEXT)
        self.run_button.setToolTip("Send this job to a remote worker.")
        self.run_button.clicked.disconnect(self.run)
        self.run_button.clicked.connect(self.submit)
        self.cancel_button.clicked.disconnect(self.reject)
        self.cancel_button.clicked.connect(self.cancel_or_close)
        self.job_task: Any = None  # the running job coroutine (qt_async.spawn)
        self.handle: Any = None  # the client JobHandle while a job runs
        self.last_message: QtWidgets.QMessageBox | None = None
        self.close_question: QtWidgets.QMessageBox | None = None
        self.detach_requested = False
        self.detached: DetachedJob | None = None
        self._request: Any = None
        self._workdir = tempfile.TemporaryDirectory(prefix="sleap-rtc-")

    @property
    def busy(self) -> bool:
        return self.job_task is not None and not self.job_task.done()

    def workdir(self) -> Path:
        return Path(self._workdir.name)

    def inform(self, title: str, text: str, icon=QtWidgets.QMessageBox.Information) -> QtWidgets.QMessageBox:
        box = QtWidgets.QMessageBox(icon, title, text, QtWidgets.QMessageBox.Ok, self)
        box.open()
        self.last_message = box
        return box

    def submit(self) -> None:
        """Run button: check, read the forms on this thread, then go async."""
        if self.busy:
            return
        queued = self.queue_box.isChecked()
        problem = project_problem(self.main_window) or self.panel.problem(need_worker=not queued) or self.queue_box.problem()
        if problem:
            self.inform("Cannot submit yet", problem, QtWidgets.QMessageBox.Warning)
            return
        try:
            request = self.collect()
            spec = self.panel.spec()
        except Exception as exc:  # a form SLEAP itself would refuse to run
            logger.exception("could not read the job settings")
            self.inform("Cannot submit yet", str(exc), QtWidgets.QMessageBox.Warning)
            return
        self.panel.persist()
        self.start(self.run_job(request, spec), request)

    def start(self, coro: Any, request: Any) -> None:
        self._request = request
        self.detach_requested = False
        self.detached = None
        self.set_busy(True)
        self.job_task = spawn(coro, on_error=self.on_job_error, on_done=lambda _: self.set_busy(False))

    # --- closing, cancelling, detaching ---------------------------------------

    def stage(self) -> str:
        tracker = getattr(self.panel, "job_stages", None)
        return tracker.stage if tracker is not None else ""

    def cancel_job(self) -> None:
        """Stop the remote job for good (the LossViewer's Cancel, or "Cancel the job")."""
        self.detach_requested = False
        if self.busy and self.handle is not None:
            self.panel.status.setText("Cancelling the job…")
            spawn(self.handle.cancel(), on_error=lambda exc: logger.warning("cancel failed: %s", exc))
        elif self.busy:
            self.job_task.cancel()

    def detach_job(self) -> None:
        """Leave the job on the worker; if its package is still being sent, detach once it is there."""
        if not self.busy:
            return
        self.detach_requested = True
        self.panel.status.setText("The job will keep running on the worker once its package is there…"
                                  if self.stage() in SENDING_STAGES else "Leaving the job running on the worker…")
        self.maybe_detach()

    def maybe_detach(self, _event: Any = None) -> None:
        """Called after every job event: detach as soon as nothing is left to send."""
        if self.detach_requested and self.handle is not None and self.stage() not in SENDING_STAGES:
            self.detach_requested = False
            spawn(self.handle.detach(), on_error=lambda exc: logger.warning("detach failed: %s", exc))

    def cancel_or_close(self) -> None:
        """The dialog's Cancel button: with a job running it asks; otherwise it closes."""
        if self.busy:
            self.ask_close()
        else:
            self.reject()

    def ask_close(self, on_answer: Any = None) -> QtWidgets.QMessageBox:
        """Keep the job running remotely (default) or cancel it; ``on_answer()`` after either."""
        worker = self.worker_name() or "the worker"
        what = "Training" if self.mode == "training" else "Tracking"
        if self.stage() in SENDING_STAGES:
            text = f"The job is still being sent to {worker}."
            detail = ("Keep running remotely: sending finishes in the background, then the job runs on the worker "
                      "without this window and its results wait there. Reopen this dialog to follow it and fetch them.")
        else:
            text = f"{what} is running on {worker}."
            detail = ("Keep running remotely: the job goes on without this window and its results wait on the worker. "
                      "Reopen this dialog to follow it and fetch them.")

        def keep() -> None:
            self.detach_job()
            self.hide_dialog()
            if on_answer is not None:
                on_answer()

        def cancel() -> None:
            self.cancel_job()
            if on_answer is not None:
                on_answer()

        self.close_question = ask_keep_or_cancel(self, "A remote job is running", text, detail=detail, on_keep=keep, on_cancel=cancel)
        return self.close_question

    def hide_dialog(self) -> None:
        self._closing_ok = True
        try:
            self.close()
        finally:
            self._closing_ok = False

    def worker_name(self) -> str:
        handle = self.handle
        worker = getattr(handle, "worker", None) if handle is not None else None
        if worker is not None:
            return getattr(worker, "name", "") or getattr(worker, "peer_id", "")
        tracker = getattr(self.panel, "job_stages", None)
        return tracker.worker if tracker is not None else ""

    def remember_detached(self, outcome: Any, spec: Any, project_dir: Path, kind: str) -> None:
        """The job runs on without us: say where, and keep what following it again needs."""
        spec.worker_id = outcome.worker_id or spec.worker_id
        spec.auto_select = False
        self.detached = DetachedJob(outcome.job_id, kind, spec, project_dir, self._request, self.worker_name() or outcome.worker_id)
        text = f"Job {outcome.job_id} keeps running on {self.detached.worker_name}; reopen this dialog to follow it and fetch its results."
        self.panel.status.setText(text)
        status_bar = getattr(self.main_window, "statusBar", None)
        if callable(status_bar):
            status_bar().showMessage(text, 15000)

    def follow_detached(self) -> bool:
        """Follow the job this dialog detached from, again (on reopen); ``False`` when there is none."""
        job = self.detached
        if job is None or self.busy:
            return False
        self.panel.status.setText(f"Following job {job.job_id} on {job.worker_name} again…")
        self.start(self.attach_job(job), job.request)
        return True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.panel.reload_shared()
        self.detach_requested = False  # watched again: a pending detach is off
        if self.detached is not None and not self.busy:
            self.follow_detached()

    def set_busy(self, busy: bool) -> None:
        self.panel.set_busy(busy)
        self.tab_widget.setEnabled(not busy)
        for button in (self.run_button, self.copy_button, self.save_button, self.export_button):
            button.setEnabled(not busy)
        self.cancel_button.setText("Close…" if busy else "Cancel")
        self.cancel_button.setEnabled(True)

    def on_job_error(self, exc: BaseException) -> None:
        self.set_busy(False)
        self.handle = None
        self.detach_requested = False
        self.panel.stages.setVisible(False)
        if is_user_cancel(exc):  # the user's own Cancel is not a failure
            self.panel.status.setText("Job cancelled; nothing was changed in your project.")
            return
        self.panel.status.setText(f"Failed: {describe(exc)[1]}")
        self.last_message = show_error(self, exc)

    def closeEvent(self, event):
        if self.busy and not getattr(self, "_closing_ok", False) and not self.detach_requested:
            event.ignore()
            self.ask_close()
            return
        super().closeEvent(event)

    def reject(self) -> None:
        """Escape and the Cancel button end here too: never a silent cancel."""
        if self.busy and not getattr(self, "_closing_ok", False) and not self.detach_requested:
            self.ask_close()
            return
        super().reject()

    async def wait_done(self) -> None:
        """Until this dialog's job task ends (detached, cancelled, finished or failed)."""
        if self.job_task is not None:
            await asyncio.gather(asyncio.shield(self.job_task), return_exceptions=True)

    # subclasses
    def collect(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    async def run_job(self, request: Any, spec: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def attach_job(self, job: DetachedJob) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
