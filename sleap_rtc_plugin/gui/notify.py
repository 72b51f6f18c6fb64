"""Telling the user a remote job ended while SLEAP is open.

A tray message where the desktop has a system tray; otherwise (and always in the
status bar) a status-bar message and a non-modal message box with a button that
opens the results. Nothing here waits: boxes are shown, never ``exec_()``-ed.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from qtpy import QtCore, QtWidgets

logger = logging.getLogger(__name__)

#: The last notification shown per window (tests and a second job replace it).
SHOWN_KEY = "sleap_rtc_notification"


def notify(window: Any, title: str, text: str, *, ok: bool, action_text: str = "", action: Callable[[], None] | None = None) -> Any:
    """Show that a job finished (``ok``) or failed; returns the tray icon or message box used."""
    status_bar = getattr(window, "statusBar", None)
    if callable(status_bar):
        status_bar().showMessage(f"{title}: {text.splitlines()[0] if text else ''}", 30000)
    if QtWidgets.QSystemTrayIcon.isSystemTrayAvailable():
        tray = QtWidgets.QSystemTrayIcon(window.windowIcon(), window)
        tray.show()
        icon = QtWidgets.QSystemTrayIcon.Information if ok else QtWidgets.QSystemTrayIcon.Warning
        tray.showMessage(title, text, icon, 15000)
        if action is not None:
            tray.messageClicked.connect(action)
        window._child_windows[SHOWN_KEY] = tray
        return tray
    icon = QtWidgets.QMessageBox.Information if ok else QtWidgets.QMessageBox.Warning
    box = QtWidgets.QMessageBox(icon, title, text, QtWidgets.QMessageBox.Close, window)
    box.setWindowModality(QtCore.Qt.NonModal)  # the user keeps working in SLEAP meanwhile
    if action is not None and action_text:
        button = box.addButton(action_text, QtWidgets.QMessageBox.AcceptRole)
        button.clicked.connect(action)
    box.show()
    window._child_windows[SHOWN_KEY] = box
    return box
