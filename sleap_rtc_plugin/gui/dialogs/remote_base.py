"""What Train remotely… and Track remotely… share: SLEAP's own ``LearningDialog``
with a "Remote worker" section added and its Run button sending the job away.

Subclassing keeps SLEAP's profile pipeline forms, model tabs, frame targets and
validation exactly as users know them; only the action changes.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from qtpy import QtWidgets
from sleap.gui.learning.dialog import LearningDialog

from ..guards import project_problem
from ..qt_async import spawn
from .connection import ConnectionPanel
from .errors import show_error

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
        self.run_button.setText(self.RUN_TEXT)
        self.run_button.setToolTip("Send this job to a remote worker.")
        self.run_button.clicked.disconnect(self.run)
        self.run_button.clicked.connect(self.submit)
        self.cancel_button.clicked.disconnect(self.reject)
        self.cancel_button.clicked.connect(self.cancel_or_close)
        self.job_task = None
        self.handle = None
        self.last_message: QtWidgets.QMessageBox | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="sleap-rtc-")
        self.resize(self.width(), self.height() + 200)

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
        problem = project_problem(self.main_window) or self.panel.problem(need_worker=True)
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
        self.set_busy(True)
        self.job_task = spawn(self.run_job(request, spec), on_error=self.on_job_error, on_done=lambda _: self.set_busy(False))

    def cancel_or_close(self) -> None:
        if self.busy and self.handle is not None:
            self.panel.status.setText("Cancelling…")
            spawn(self.handle.cancel(), on_error=lambda exc: logger.warning("cancel failed: %s", exc))
        elif self.busy:
            self.job_task.cancel()
        else:
            self.reject()

    def set_busy(self, busy: bool) -> None:
        self.panel.set_busy(busy)
        self.tab_widget.setEnabled(not busy)
        for button in (self.run_button, self.copy_button, self.save_button, self.export_button):
            button.setEnabled(not busy)
        self.cancel_button.setText("Cancel job" if busy else "Cancel")

    def on_job_error(self, exc: BaseException) -> None:
        self.set_busy(False)
        self.handle = None
        self.panel.status.setText(f"Failed: {exc}")
        self.last_message = show_error(self, exc)

    def closeEvent(self, event):
        if self.busy:
            self.cancel_or_close()
        super().closeEvent(event)

    # subclasses
    def collect(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    async def run_job(self, request: Any, spec: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
