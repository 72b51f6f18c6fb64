"""This project's own plugin: "Train remotely…" and "Track remotely…" in SLEAP's Predict menu.

Registered through the ``sleap_rtc`` entry point (``remote = "sleap_rtc_plugin.gui.plugin"``)
like any third-party add-on would be.
"""

from __future__ import annotations

import logging
from typing import Any

from .guards import project_problem
from .hookspecs import DialogContribution, hookimpl
from .manager import host_of

logger = logging.getLogger(__name__)

TRAIN_KEY = "train_remotely"
TRACK_KEY = "track_remotely"
TRAIN_TEXT = "Train remotely..."
TRACK_TEXT = "Track remotely..."


def _train_factory(window: Any):
    from .dialogs.train import RemoteTrainingDialog

    return RemoteTrainingDialog(window, defaults=_defaults(window))


def _track_factory(window: Any):
    from .dialogs.track import RemoteInferenceDialog

    return RemoteInferenceDialog(window, defaults=_defaults(window))


def _defaults(window: Any):
    host = host_of(window)
    return host.hook.sleap_rtc_default_connection(window=window) if host else None


@hookimpl
def sleap_rtc_dialogs() -> list[DialogContribution]:
    return [
        DialogContribution(TRAIN_KEY, TRAIN_TEXT, _train_factory),
        DialogContribution(TRACK_KEY, TRACK_TEXT, _track_factory),
    ]


@hookimpl
def sleap_rtc_add_menu_actions(window: Any, menus: dict) -> None:
    """Insert both actions right after SLEAP's "Run Inference..." in the Predict menu."""
    predict = menus.get("Predict")
    if predict is None:
        logger.warning("SLEAP has no Predict menu; remote actions not added")
        return
    anchor = window._menu_actions.get("inference")
    actions = predict.actions()
    before = actions[actions.index(anchor) + 1] if anchor in actions and actions.index(anchor) + 1 < len(actions) else None
    for key, text, tip in (
        (TRAIN_KEY, TRAIN_TEXT, "Train with SLEAP's configuration on a remote GPU worker."),
        (TRACK_KEY, TRACK_TEXT, "Predict with trained models on a remote GPU worker."),
    ):
        action = predict.addAction(text)
        action.setToolTip(tip)
        action.triggered.connect(lambda checked=False, k=key: show_dialog(window, k))
        if before is not None:
            predict.removeAction(action)
            predict.insertAction(before, action)
        window._menu_actions[key] = action
    from .jobs_panel import add_menu_action

    add_menu_action(window, predict, before)  # Predict → Remote Jobs…
    install_quit_guard(window)


def install_quit_guard(window: Any):
    """Quitting SLEAP with a remote job running asks first (``quit_guard.QuitGuard``); once per window."""
    from .quit_guard import QuitGuard

    guard = getattr(window, "_sleap_rtc_quit_guard", None)
    if guard is None:
        guard = QuitGuard(window, (TRAIN_KEY, TRACK_KEY))
        window.installEventFilter(guard)
        window._sleap_rtc_quit_guard = guard
    return guard


@hookimpl
def sleap_rtc_window_closing(window: Any) -> None:
    """The window is closing: never cancel silently. The quit guard asked already (and holds
    the close back while a job runs); a window without one leaves its jobs on the workers."""
    from .jobs_panel import window_closing as jobs_panel_closing

    jobs_panel_closing(window)  # jobs the Remote Jobs panel follows keep running remotely
    if getattr(window, "_sleap_rtc_quit_guard", None) is not None:
        return
    for key in (TRAIN_KEY, TRACK_KEY):
        dialog = window._child_windows.get(key)
        if dialog is not None and getattr(dialog, "busy", False):
            dialog.detach_job()


def show_dialog(window: Any, key: str):
    """Open (non-modally, via ``.open()``) the plugin dialog ``key`` for ``window``.

    Refuses with SLEAP's own guidance when the project is unsaved or has no videos.
    One dialog per key per window is kept and reused, as SLEAP does with its own.
    """
    from qtpy.QtWidgets import QMessageBox

    problem = project_problem(window)
    if problem:
        box = QMessageBox(QMessageBox.Information, "SLEAP", problem, QMessageBox.Ok, window)
        box.open()
        window._child_windows["sleap_rtc_guard"] = box
        return box
    dialog = window._child_windows.get(key)
    if dialog is not None and dialog.labels is not window.labels:
        dialog.deleteLater()
        dialog = None
    if dialog is None:
        host = host_of(window)
        assert host is not None  # the launcher installs the host before any menu action
        dialog = host.make_dialog(key, window)
        window._child_windows[key] = dialog
    dialog.update_file_lists()
    dialog.open()
    return dialog
