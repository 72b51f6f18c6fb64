"""The launcher's real SLEAP MainWindow: menus, the hook mechanism, guards, both dialogs.

One MainWindow for the whole module (constructing it is the slow part).
"""

from __future__ import annotations

import zipfile

import pytest

from fixtures_gui import DOCS_IMAGES, main_window, project_path, qapp_module, run_qasync  # noqa: F401

from sleap_rtc_plugin.gui.hookspecs import DialogContribution, hookimpl

pytestmark = pytest.mark.gui


class SecondPlugin:
    """A second add-on, registered programmatically (no entry point)."""

    def __init__(self):
        self.menus_seen: list[str] = []

    @hookimpl
    def sleap_rtc_add_menu_actions(self, window, menus):
        self.menus_seen = sorted(menus)
        menus["Help"].addAction("Second plugin action")

    @hookimpl
    def sleap_rtc_dialogs(self):
        from qtpy.QtWidgets import QDialog

        def factory(window):
            dialog = QDialog(window)
            dialog.setWindowTitle("Second plugin dialog")
            return dialog

        return [DialogContribution("second", "Second…", factory)]

    @hookimpl
    def sleap_rtc_default_connection(self, window):
        from types import SimpleNamespace

        return SimpleNamespace(server_url="ws://lab-coordinator.example:8765", room_id="lab-room")


SECOND = SecondPlugin()
EXTRA_PLUGINS = [SECOND]


def _predict_texts(window):
    from sleap_rtc_plugin.gui.manager import window_menus

    return [a.text() for a in window_menus(window)["Predict"].actions()]


def test_predict_menu_has_remote_items_right_after_run_inference(main_window):
    texts = _predict_texts(main_window)
    i = texts.index("Run Inference...")
    assert texts[i + 1 : i + 3] == ["Train remotely...", "Track remotely..."]
    assert texts.count("Train remotely...") == 1


def test_entry_point_and_programmatic_plugins_both_loaded(main_window):
    from sleap_rtc_plugin.gui.manager import host_of

    host = host_of(main_window)
    assert "remote" in host.plugin_names()
    assert host.pm.is_registered(SECOND)
    assert {"File", "Predict", "Help"} <= set(SECOND.menus_seen)
    help_texts = [a.text() for a in main_window.menuBar().actions()[-1].menu().actions()]
    assert "Second plugin action" in help_texts
    assert set(host.dialogs()) == {"train_remotely", "track_remotely", "second"}
    assert host.make_dialog("second", main_window).windowTitle() == "Second plugin dialog"
    with pytest.raises(KeyError, match="no plugin contributes"):
        host.make_dialog("nope", main_window)
    # installing twice must not duplicate the menu items
    host.install(main_window)
    assert _predict_texts(main_window).count("Track remotely...") == 1


def test_unsaved_changes_get_sleaps_own_guidance(main_window, qtbot):
    from sleap_rtc_plugin.gui.plugin import show_dialog

    main_window.state["has_changes"] = True
    try:
        box = show_dialog(main_window, "train_remotely")
        assert box.text() == "You have unsaved changes. Please save before running training or inference."
        box.close()
    finally:
        main_window.state["has_changes"] = False
    saved = main_window.state["filename"]
    main_window.state["filename"] = None
    try:
        box = show_dialog(main_window, "track_remotely")
        assert box.text() == "Please save your project before running training or inference."
        box.close()
    finally:
        main_window.state["filename"] = saved


def _trigger(window, text):
    action = next(a for a in window._menu_actions.values() if a.text() == text)
    action.trigger()
    return window._child_windows["train_remotely" if text.startswith("Train") else "track_remotely"]


def test_train_dialog_is_sleaps_training_dialog_with_remote_section(main_window, qtbot):
    from sleap.gui.learning.dialog import LearningDialog

    dialog = _trigger(main_window, "Train remotely...")
    qtbot.waitUntil(dialog.isVisible)
    assert isinstance(dialog, LearningDialog) and dialog.mode == "training"
    assert dialog.run_button.text() == "Train remotely"
    # the firstresult hook from the second plugin supplied the defaults
    assert dialog.panel.server_url.text() == "ws://lab-coordinator.example:8765"
    assert dialog.panel.room_id.text() == "lab-room"
    # without a token (nor a session string, which an earlier test may have had remembered)
    # the Run button explains what is missing instead of submitting
    dialog.panel.session_string.setText("")
    dialog.panel.token.setText("")
    dialog.submit()
    assert not dialog.busy
    assert "room ID and token" in dialog.last_message.text()
    dialog.last_message.close()


def test_training_package_is_sleaps_export_format(main_window, tmp_path):
    from sleap_rtc_plugin.gui import packaging

    dialog = main_window._child_windows.get("train_remotely") or _trigger(main_window, "Train remotely...")
    request = packaging.collect_training_request(dialog)

    async def build():
        import asyncio

        return await asyncio.to_thread(packaging.write_training_package, request, tmp_path)

    archive = run_qasync(build())
    assert archive.name == "project.slp.training_job.zip"
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"project.pkg.slp", "train-script.sh", "jobs.yaml"} <= names
    heads = [n for n in names if n.endswith(".yaml") and n != "jobs.yaml"]
    assert heads, names
    import sleap_io as sio

    zipfile.ZipFile(archive).extract("project.pkg.slp", tmp_path)
    pkg = sio.load_slp(str(tmp_path / "project.pkg.slp"))
    assert len(pkg.user_labeled_frames) == 3
    assert pkg.videos[0].backend is not None and pkg.video.filename.endswith(".pkg.slp")


def test_track_dialog_is_sleaps_inference_dialog(main_window, qtbot):
    dialog = _trigger(main_window, "Track remotely...")
    qtbot.waitUntil(dialog.isVisible)
    assert dialog.mode == "inference"
    assert dialog.run_button.text() == "Track remotely"
    dialog.panel.token.setText("t")
    dialog.panel.auto_select.setChecked(True)
    dialog.submit()  # no trained model in this project yet: a clear refusal, no job
    assert not dialog.busy
    assert dialog.last_message is not None and dialog.last_message.isVisible()
    dialog.last_message.close()
    dialog.close()
