"""Predict → Remote Jobs… with the real SLEAP MainWindow, a real worker subprocess and sleap-nn.

Issue 17 items 2–4: the panel lists the project's jobs; a window closed mid-training
leaves its job running; a new window on the same project shows it, Watch live replays
the epochs so far and follows the rest into SLEAP's LossViewer, the results are
installed once (a second fetch does nothing) and a notification says so; a failed job
shows the worker's last sleap-nn lines.
"""

from __future__ import annotations

import asyncio
import zipfile
from pathlib import Path

import pytest

from fixtures_data import sample_labels, sample_root, trained_model, failing_training_package, training_package  # noqa: F401
from fixtures_e2e import worker_process  # noqa: F401
from fixtures_gui import DOCS_IMAGES, make_project, qapp_module, run_qasync, stop_qt_threads, wait_until  # noqa: F401
from sleap_rtc_plugin import sample_data

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(900)]


async def _wait_for(predicate, timeout: float = 120.0, what: str = "condition"):
    await wait_until(predicate, timeout, what)


def _window(project: Path):
    from sleap_rtc_plugin.gui import launcher

    args = launcher.sleap_app.create_sleap_label_parser().parse_args([str(project), "--no-usage-data"])
    window, _host = launcher.build_window(args)
    return window


def _close(window) -> None:
    window.state["has_changes"] = False
    window.close()


def _spec(worker):
    from sleap_rtc_plugin.client.api import ConnectionSpec

    return ConnectionSpec(session_string=worker.session_string, server_url=worker.server_url, ice_loopback=True)


def _open_panel(window, spec):
    """Through the menu, as a user does."""
    from sleap_rtc_plugin.gui.jobs_panel import PANEL_KEY

    window._menu_actions[PANEL_KEY].trigger()
    panel = window._child_windows[PANEL_KEY]
    panel.connection = spec
    return panel


def _epoch_ends(handle_events) -> int:
    return sum(1 for e in handle_events if e.kind == "progress" and e.data.get("event") == "epoch_end")


def test_reattach_after_restart_watch_live_and_fetch_once(qapp_module, worker_process, tmp_path):  # noqa: F811
    from sleap_rtc_plugin.client.api import submit_training

    project = make_project(tmp_path / "project")
    package = sample_data.make_training_package(sample_data.make_labels(tmp_path / "labels.slp"), tmp_path / "pkg", epochs=12, steps_per_epoch=2)
    spec = _spec(worker_process)
    first = _window(project)
    second = None

    async def scenario():
        nonlocal second
        # Window 1: a training job (as Train remotely… submits it), followed from the panel.
        handle = submit_training(package, spec, project_dir=project.parent)
        seen = []
        async for event in handle.events():
            seen.append(event)
            if _epoch_ends(seen) >= 2:
                break
        await handle.detach()
        assert (await handle.result()).detached
        panel = _open_panel(first, spec)
        await _wait_for(lambda: panel.records and panel.records[0].state == "running", what="the job listed as running")
        panel.select(handle.job_id)
        followed = panel.watch_live()
        await _wait_for(lambda: followed.controllable and (panel.viewers[handle.job_id].epoch or 0) >= 1, what="window 1 following the job")

        # SLEAP closes mid-training: the job is left running remotely, not cancelled.
        _close(first)
        await _wait_for(lambda: followed.done(), what="window 1's handle detached")
        assert (await followed.result()).detached

        # A new SLEAP window on the same project: the job is there, still running.
        second = _window(project)
        panel = _open_panel(second, spec)
        await _wait_for(lambda: panel.record(handle.job_id) is not None, what="the job listed in window 2")
        record = panel.record(handle.job_id)
        assert record.state == "running" and record.kind == "train" and record.models == ["single_instance"]
        assert "running: epoch" in panel.table.item(0, 4).text()
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        assert panel.grab().save(str(DOCS_IMAGES / "remote-jobs.png"))

        panel.select(handle.job_id)
        watching = panel.watch_live()
        viewer = panel.viewers[handle.job_id]
        # The replay redraws the curve so far at once: the viewer is past epoch 2 before the job is.
        await _wait_for(lambda: (viewer.epoch or 0) >= 2, timeout=60, what="the replayed epochs in the LossViewer")
        await _wait_for(lambda: watching.done(), timeout=300, what="the job's end")
        outcome = await watching.result()
        assert len(outcome.model_dirs) == 1 and (outcome.model_dirs[0] / "best.ckpt").is_file()
        assert (viewer.epoch or 0) >= 10  # the remaining epochs arrived live
        await panel._reload(False)
        record = panel.record(handle.job_id)
        assert record.fetched and record.state == "acknowledged"
        assert panel.table.item(0, 4).text() == "finished: results installed"

        # Notification: no system tray offscreen → a status-bar message and a non-blocking box.
        box = panel.last_notification
        assert box is not None and "finished" in box.windowTitle() and box.isVisible() and not box.isModal()
        assert "finished" in second.statusBar().currentMessage()

        # Fetch results again: nothing happens, nothing is installed twice.
        assert panel.fetch_results(record) is None
        assert "installed already" in panel.status.text()
        models = project.parent / "models"
        assert len(list(models.iterdir())) == 1

    try:
        run_qasync(scenario(), timeout=600)
    finally:
        for window in (first, second):  # both windows' frame-loader threads: a live QThread collected later aborts Python
            if window is not None:
                _close(window)
                stop_qt_threads(window)



def test_a_failed_job_shows_the_workers_log_and_notifies(qapp_module, worker_process, tmp_path):  # noqa: F811
    from sleap_rtc_plugin.client.api import RemoteError, submit_training

    project = make_project(tmp_path / "project")
    package = failing_training_package(sample_data.make_labels(tmp_path / "labels.slp"), tmp_path)
    spec = _spec(worker_process)
    window = _window(project)

    async def scenario():
        handle = submit_training(package, spec, project_dir=project.parent)
        with pytest.raises(RemoteError):
            await handle.result()
        panel = _open_panel(window, spec)
        await _wait_for(lambda: panel.record(handle.job_id) is not None, what="the failed job listed")
        panel.select(handle.job_id)
        assert panel.table.item(0, 4).text().startswith("failed")
        assert not panel.buttons["fetch"].isEnabled() and panel.buttons["again"].isEnabled()
        box = panel.show_log()
        assert "optimizer_name" in box.text.toPlainText()

        again = panel.run_again()  # same package, same failure: a notification with Show log
        await _wait_for(lambda: again.done() and again.job_id not in panel.handles, timeout=300, what="the second run's end")
        note = panel.last_notification
        assert note is not None and "failed" in note.windowTitle() and "Show log" in [b.text() for b in note.buttons()]
        await panel._reload(False)
        assert len(panel.records) == 2

    try:
        run_qasync(scenario(), timeout=600)
    finally:
        _close(window)
        stop_qt_threads(window)


def test_queue_from_the_dialog_with_a_busy_worker_shows_the_position(qapp_module, worker_process, tmp_path):  # noqa: F811
    from sleap_rtc_plugin.client.api import RemoteError, submit_training
    from sleap_rtc_plugin.gui.plugin import show_dialog

    project = make_project(tmp_path / "project")
    busy_package = sample_data.make_training_package(sample_data.make_labels(tmp_path / "labels.slp"), tmp_path / "pkg", epochs=100_000, steps_per_epoch=2)  # busy until cancelled
    spec = _spec(worker_process)
    window = _window(project)

    async def scenario():
        busy = submit_training(busy_package, spec, project_dir=tmp_path / "elsewhere")
        async for event in busy.events():
            if event.kind == "progress":
                break
        dialog = show_dialog(window, "train_remotely")
        dialog.pipeline_form_widget.set_form_data({"_pipeline": "single animal"})
        dialog.panel.server_url.setText(worker_process.server_url)
        dialog.panel.session_string.setText(worker_process.session_string)
        for tab in dialog.tabs.values():
            tab.set_fields_from_key_val_dict({"trainer_config.max_epochs": 2, "model_config.backbone_config.unet.filters": 8,
                                              "model_config.backbone_config.unet.max_stride": 8})
        dialog.queue_box.setChecked(True)
        dialog.queue_box.labels.setText("gpu=a100*")
        assert dialog.queue_box.problem() is None and dialog.queue_box.queue_options().labels == {"gpu": "a100*"}
        dialog.queue_box.labels.setText("")
        dialog.submit()
        await _wait_for(lambda: dialog.handle is not None and dialog.handle.state.value == "queued", what="the dialog's job queued")
        await _wait_for(lambda: "position 1 in the queue" in dialog.panel.status.text(), timeout=30, what="the queue position in the dialog")
        panel = _open_panel(window, spec)
        job_id = dialog.handle.job_id
        await _wait_for(lambda: panel.record(job_id) is not None and panel.record(job_id).position is not None, what="the queued job listed")
        panel.select(job_id)
        row = [r.job_id for r in panel.records].index(job_id)
        assert panel.table.item(row, 4).text() == "queued: position 1 in the queue"
        assert panel.record(job_id).queue is not None

        handle = dialog.handle
        panel.cancel_job()  # withdrawn from the queue through the dialog's own handle (one job model)
        try:
            await _wait_for(lambda: handle.done(), timeout=60, what="the queued job's end")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: panel says {panel.status.text()!r}, dialog says {dialog.panel.status.text()!r}, state {handle.state}") from None
        await panel._reload(False)
        assert panel.record(job_id).state == "cancelled"
        await busy.cancel()
        with pytest.raises(RemoteError):
            await busy.result()

    try:
        run_qasync(scenario(), timeout=400)
    finally:
        dialog = window._child_windows.get("train_remotely")
        if dialog is not None:
            # Left open, it keeps refreshing its worker list: that would fire into the next
            # test module after this module's event loop is closed.
            dialog.hide()
        _close(window)
        stop_qt_threads(window)


def _project_like_the_models(folder: Path, labels_path: Path, n_frames: int = 6) -> Path:
    """A saved project on frames like the model's own (an image sequence), with its skeleton."""
    import imageio.v3 as iio
    import sleap_io as sio

    folder.mkdir(parents=True)
    source = sio.load_slp(str(labels_path))
    files = []
    for i in range(n_frames):
        path = folder / f"frame{i:03d}.png"
        iio.imwrite(path, source.videos[0][i].squeeze())
        files.append(str(path))
    video = sio.Video.from_filename(files)
    skeleton = source.skeletons[0]
    first = next(lf for lf in source.labeled_frames if lf.frame_idx < n_frames)
    frame = sio.LabeledFrame(video=video, frame_idx=first.frame_idx,
                             instances=[sio.Instance.from_numpy(first.instances[0].numpy(), skeleton=skeleton)])
    path = folder / "project.slp"
    sio.Labels(labeled_frames=[frame], videos=[video], skeletons=[skeleton]).save(str(path))
    return path


def test_fetching_a_detached_tracking_job_merges_its_predictions_once(qapp_module, worker_process, trained_model, tmp_path):  # noqa: F811
    """Fetch results on a tracking job adds its predictions to the open project, once."""
    import sleap_io as sio

    from sleap_rtc_plugin.client.api import submit_inference
    from sleap_rtc_plugin.gui import packaging

    project = _project_like_the_models(tmp_path / "project", trained_model.labels_path)
    spec = _spec(worker_process)
    window = _window(project)

    async def scenario():
        req = packaging.InferenceRequest(labels=window.labels, labels_filename=str(project), model_dirs=[trained_model.run_dir],
                                         frames={0: [0, 1, 2, 3]})
        package = packaging.write_inference_package(req, tmp_path / "pkg")
        handle = submit_inference(package.path, spec, project_dir=project.parent, inputs=package.inputs)
        async for event in handle.events():
            if event.kind == "status" and event.data.get("state") == "running":
                break
        await handle.detach()  # the Track dialog was closed: the job goes on remotely
        assert (await handle.result()).detached

        panel = _open_panel(window, spec)
        await _wait_for(lambda: panel.record(handle.job_id) is not None, what="the tracking job listed")
        fetching = panel.fetch_results(panel.record(handle.job_id))
        assert fetching is not None
        await _wait_for(lambda: handle.job_id in panel.merged, timeout=300, what="the predictions merged")
        outcome = await fetching.result()
        (predictions,) = outcome.prediction_files
        with_instances = [lf for lf in sio.load_slp(str(predictions)).labeled_frames if lf.instances]
        assert panel.merged[handle.job_id] == len(with_instances)
        assert "added to the project" in panel.status.text() or "predictions" in panel.status.text()

        await panel._reload(False)
        assert panel.fetch_results(panel.record(handle.job_id)) is None  # a second fetch merges nothing
        assert list(panel.merged) == [handle.job_id]

    try:
        run_qasync(scenario(), timeout=600)
    finally:
        _close(window)
        stop_qt_threads(window)
