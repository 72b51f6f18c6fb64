"""Quitting SLEAP with a remote job running asks first, like closing its dialog does.

An event filter on the main window holds the close back while any plugin dialog
follows a job, asks "Keep running remotely" (default) or "Cancel the job", lets
each job detach (after its upload, if one is under way) or cancel, and then closes
the window for real. "Back" keeps SLEAP open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from qtpy.QtCore import QEvent, QObject

from .dialogs.closing import ask_keep_or_cancel
from .qt_async import spawn

logger = logging.getLogger(__name__)


def running_dialogs(window: Any, keys: Iterable[str]) -> list[Any]:
    dialogs = [window._child_windows.get(key) for key in keys]
    return [d for d in dialogs if d is not None and getattr(d, "busy", False)]


class QuitGuard(QObject):
    """Installed once per window by the plugin; ``question`` is the box while it is asked."""

    def __init__(self, window: Any, keys: Iterable[str]):
        super().__init__(window)
        self.window = window
        self.keys = tuple(keys)
        self.question = None
        self.allow = False
        self.closed = False
        self._waiting: Any = None

    def eventFilter(self, obj, event):  # noqa: N802 (Qt name)
        if obj is self.window and event.type() == QEvent.Close and not self.allow:
            running = running_dialogs(self.window, self.keys)
            if running:
                event.ignore()
                if self._waiting is None:
                    self.ask(running)
                return True
        return False

    def ask(self, running: list[Any]) -> None:
        sending = any(d.stage() in ("", "Packaging", "Connecting", "Uploading") for d in running)
        names = ", ".join(sorted({d.worker_name() or "a worker" for d in running}))
        text = f"{len(running)} remote job(s) are running on {names}."
        detail = ("Keep running remotely: they go on without SLEAP and their results wait on the worker; "
                  "reopen the project and Train/Track remotely… (or Predict → Remote Jobs…) to fetch them.")
        if sending:
            detail += " A job whose package is still being sent finishes sending first; SLEAP quits right after."
        self.question = ask_keep_or_cancel(self.window, "Quit SLEAP?", text, detail=detail,
                                           on_keep=lambda: self.finish(running, keep=True),
                                           on_cancel=lambda: self.finish(running, keep=False))

    def finish(self, running: list[Any], *, keep: bool) -> None:
        for dialog in running:
            dialog.detach_job() if keep else dialog.cancel_job()
        status_bar = getattr(self.window, "statusBar", None)
        if callable(status_bar):
            status_bar().showMessage("Leaving the remote job(s) running, then quitting…" if keep else "Cancelling the remote job(s), then quitting…")
        self._waiting = spawn(self._wait(running), on_done=lambda _: self.close_now(), on_error=lambda _: self.close_now())

    async def _wait(self, running: list[Any]) -> None:
        await asyncio.gather(*(d.wait_done() for d in running), return_exceptions=True)

    def close_now(self) -> None:
        self._waiting = None
        self.allow = True
        try:
            self.closed = bool(self.window.close())  # SLEAP may still ask about unsaved changes
        finally:
            self.allow = False
