"""The one question asked before a window closes on a running remote job.

SLEAP's own Run Training closes its dialog and training goes on; so does a remote
job: "Keep running remotely" (the default) leaves it on the worker, where its
results wait; only "Cancel the job" stops it. "Back" (Escape) closes nothing.
Non-modal (``open()``), answered through a callback, like every box here.
"""

from __future__ import annotations

from typing import Callable

from qtpy import QtWidgets

KEEP = "Keep running remotely"
CANCEL = "Cancel the job"
BACK = "Back"


def ask_keep_or_cancel(parent: QtWidgets.QWidget, title: str, text: str, *, on_keep: Callable[[], None],
                       on_cancel: Callable[[], None], detail: str = "") -> QtWidgets.QMessageBox:
    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Question, title, text, QtWidgets.QMessageBox.NoButton, parent)
    if detail:
        box.setInformativeText(detail)
    keep = box.addButton(KEEP, QtWidgets.QMessageBox.AcceptRole)
    cancel = box.addButton(CANCEL, QtWidgets.QMessageBox.DestructiveRole)
    back = box.addButton(BACK, QtWidgets.QMessageBox.RejectRole)
    box.setDefaultButton(keep)
    box.setEscapeButton(back)

    def answered(button: QtWidgets.QAbstractButton) -> None:
        if button is keep:
            on_keep()
        elif button is cancel:
            on_cancel()

    box.buttonClicked.connect(answered)
    box.open()
    return box


def button(box: QtWidgets.QMessageBox, text: str) -> QtWidgets.QAbstractButton:
    """The button of ``box`` labelled ``text`` (tests and the quit guard press them)."""
    return next(b for b in box.buttons() if b.text() == text)
