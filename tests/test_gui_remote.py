"""The dialogs against a real coordinator: live worker list, real errors, screenshots.

The coordinator and the registered worker peer are real (loopback, port 0); the
worker peer only registers GPU metadata -- enough for discovery, which is what the
list shows. Everything runs on a qasync loop driving the QApplication, as in the app.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml

from fixtures_e2e import worker_process  # noqa: F401
from fixtures_gui import DOCS_IMAGES, main_window, project_path, qapp_module, run_qasync, sleap_run_training_with  # noqa: F401

pytestmark = pytest.mark.gui

GPU_METADATA = {
    "name": "gpu-box-1",
    "hostname": "lab-gpu-01",
    "accelerator": "cuda",
    "gpus": [{"name": "NVIDIA A100-SXM4-40GB", "memory_free_mb": 39000, "memory_total_mb": 40960}],
    "labels": {"site": "lab1"},
}
CPU_METADATA = {"name": "cpu-box", "hostname": "lab-cpu-02", "accelerator": "cpu", "gpus": [], "labels": {}}


async def _wait_for(predicate, timeout: float = 60.0, state=lambda: ""):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached in time {state()}")
        await asyncio.sleep(0.05)


def _open(window, key):
    from sleap_rtc_plugin.gui.plugin import show_dialog

    return show_dialog(window, key)


def _save(widget, name):
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    assert widget.grab().save(str(DOCS_IMAGES / name))


def test_worker_list_and_errors_from_real_coordinator(main_window, tmp_path):
    pytest.importorskip("sleap_rtc_plugin.client.api")
    from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorServer

    dialog = _open(main_window, "train_remotely")
    panel = dialog.panel

    async def scenario():
        server = CoordinatorServer("127.0.0.1", 0, tmp_path / "coord.sqlite3")
        await server.start()
        workers = []
        try:
            room_id, token, _ = await server.create_room()
            panel.server_url.setText(server.url)
            panel.room_id.setText(room_id)
            panel.token.setText(token)
            panel.session_string.setText("")
            panel.auto_select.setChecked(True)

            # an empty room: submitting gives the real "no worker" error, as a message box
            dialog.submit()
            await _wait_for(lambda: not dialog.busy)
            assert dialog.last_message.windowTitle() == "No worker available"
            assert dialog.last_message.detailedText().startswith("[no_worker]")
            _save(dialog.last_message, "error-no-worker.png")
            dialog.last_message.close()

            for meta in (GPU_METADATA, CPU_METADATA):
                w = CoordinatorClient(server.url, room_id=room_id, token=token, role="worker", metadata=meta)
                await w.start()
                workers.append(w)
            panel.auto_select.setChecked(False)
            panel.refresh()
            await _wait_for(lambda: panel.table.rowCount() == 2 and panel.refresh_button.isEnabled())
            rows = {panel.table.item(r, 0).text(): [panel.table.item(r, c).text() for c in range(6)] for r in range(2)}
            assert rows["gpu-box-1"][1] == "NVIDIA A100-SXM4-40GB"
            assert rows["gpu-box-1"][2].startswith("38.1 GB")
            assert rows["gpu-box-1"][3] == "available"
            assert rows["gpu-box-1"][4] == "lab-gpu-01"
            assert rows["gpu-box-1"][5] == "site=lab1"
            assert rows["cpu-box"][2] == "—"
            assert panel.selected_worker_id() == workers[0].peer_id
            assert panel.spec().worker_id == workers[0].peer_id
            _save(dialog, "train-remotely.png")

            # a wrong token is refused by the coordinator: the list says so, nothing crashes
            panel.token.setText("wrong-token")
            panel.refresh()
            await _wait_for(lambda: panel.refresh_button.isEnabled())
            assert panel.status.text().startswith("Could not list workers")
            assert panel.last_error_box.windowTitle() == "Cannot join the room", panel.last_error_box.detailedText()
            panel.last_error_box.close()
        finally:
            for w in workers:
                await w.close()
            await server.stop()

    run_qasync(scenario())
    for box in dialog.findChildren(type(dialog.last_message)):
        box.close()
    dialog.close()


def test_error_boxes_say_what_to_do(qapp_module):
    from sleap_rtc_plugin.client.api import RemoteError
    from sleap_rtc_plugin.gui.dialogs.errors import show_error

    expected = {
        "no_worker": "No worker available",
        "bad_secret": "Wrong room secret",
        "connection_lost": "Connection lost",
        "choose_worker": "Choose a worker",
        "no_room": "Cannot join the room",
        "job_failed": "Remote job failed",
        "worker_failed": "The worker could not prove who it is",  # peer/auth.py: the worker failed the room-secret check
        "job_cancelled": "Job cancelled elsewhere",
        "unreachable": "Cannot reach the coordinator",
        "something_new": "Remote job error",
    }
    for code, title in expected.items():
        box = show_error(None, RemoteError(code, f"detail for {code}"))
        assert box.windowTitle() == title
        assert box.informativeText()
        assert f"[{code}] detail for {code}" == box.detailedText()
        if code == "bad_secret":
            _save(box, "error-bad-secret.png")
        box.close()
    box = show_error(None, ConnectionResetError("peer reset"))
    assert box.windowTitle() == "Connection lost"
    box.close()


def test_track_dialog_screenshot(main_window):
    dialog = _open(main_window, "track_remotely")
    _save(dialog, "track-remotely.png")
    dialog.close()


@pytest.mark.slow
@pytest.mark.timeout(1500)  # three real jobs (train, predict after training, track) on a CPU
def test_end_to_end_remote_training_then_tracking(main_window, worker_process, tmp_path):  # noqa: F811
    """Real client, coordinator and CPU worker (``sleap-rtc worker`` in a subprocess with
    its embedded coordinator): train remotely from the dialog, the model lands in
    ``models/``; then track remotely with it and the predictions are merged into the
    open project."""
    from sleap.gui.widgets.frame_target_selector import FrameTargetSelection

    dialog = _open(main_window, "train_remotely")
    dialog.pipeline_form_widget.set_form_data({"_pipeline": "single"})  # SLEAP 1.6.6's key ("single animal" is ignored)
    assert dialog.current_pipeline == "single" and dialog.shown_tab_names == ["single_instance"], (dialog.current_pipeline, dialog.shown_tab_names)
    dialog.frame_target_selector.set_selection(FrameTargetSelection(target_key="user_labeled"))  # Inference Target: predict after training
    panel = dialog.panel
    panel.server_url.setText(worker_process.server_url)
    panel.session_string.setText(worker_process.session_string)
    for tab in dialog.tabs.values():  # SLEAP's defaults train for hours on a CPU
        tab.set_fields_from_key_val_dict({
            "trainer_config.max_epochs": 2,
            "model_config.backbone_config.unet.filters": 8,
            "model_config.backbone_config.unet.max_stride": 8,
        })

    async def train():
        dialog.submit()
        await _wait_for(lambda: not dialog.busy, timeout=900, state=dialog.panel.status.text)

    run_qasync(train(), timeout=900)
    assert dialog.model_dirs, dialog.panel.status.text()
    for d in dialog.model_dirs:
        assert (d / "best.ckpt").exists()
        assert d.parent.name == "models"
        heads = yaml.safe_load((d / "training_config.yaml").read_text())["model_config"]["head_configs"]
        assert [k for k, v in heads.items() if v] == ["single_instance"]  # the pipeline the dialog showed is the one trained
        assert str(tmp_path / "worker-data") not in (d / "training_config.yaml").read_text()  # no path into the worker's job folder
    runs_folder, _ = sleap_run_training_with(main_window, dialog.model_dirs[0])  # SLEAP's own Run Training afterwards
    assert Path(runs_folder) == Path(main_window.state["filename"]).parent / "models"
    assert dialog.loss_viewer.plateau_patience is not None  # "Epochs in Plateau: N / 5", as SLEAP's runner sets it
    summary = dialog.inference_summary  # the Inference Target ran after training, remotely
    assert summary is not None and 0 < summary.frames_total <= len(main_window.labels.videos[0]), dialog.panel.status.text()
    assert "Inference complete!" in dialog.last_message.text() and "with no instances found" in dialog.last_message.text()
    assert all(re.fullmatch(r"video0_project\.slp\.\d{6}_\d{6}\.predictions\.slp", p.name) for p in summary.files), summary.files
    dialog.close()

    main_window.commands.saveProject()  # merged predictions are unsaved changes: SLEAP asks to save before inference
    predicted_before = sum(len(lf.predicted_instances) for lf in main_window.labels.labeled_frames)
    track = _open(main_window, "track_remotely")
    track.pipeline_form_widget.set_form_data({"_pipeline": "single"})
    # SLEAP's Peak Threshold reaches sleap-nn on the worker: at 0 even a 2-epoch model finds an instance on every frame
    # (at SLEAP's default 0.2 one CI run's model found none).
    track.pipeline_form_widget.set_form_data({"_peak_threshold_default": False, "_peak_threshold": 0.0})
    track.frame_target_selector.set_selection(FrameTargetSelection(target_key="video"))  # more than the labeled frames predicted above
    track.panel.server_url.setText(worker_process.server_url)
    track.panel.session_string.setText(worker_process.session_string)

    async def predict():
        track.submit()
        await _wait_for(lambda: not track.busy, timeout=600)

    run_qasync(predict(), timeout=700)
    assert track.merged_count == len(main_window.labels.videos[0]), track.panel.status.text()
    predicted_after = sum(len(lf.predicted_instances) for lf in main_window.labels.labeled_frames)
    assert predicted_after > predicted_before
    track.close()
