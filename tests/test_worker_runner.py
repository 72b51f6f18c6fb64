"""The job runner against real sleap-nn on CPU: train, predict, stop early, cancel, fail."""

from __future__ import annotations

import asyncio
import os

import pytest
import sleap_io as sio

from fixtures_data import sample_labels, sample_root, trained_model, training_package  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.worker.package import open_package
from sleap_rtc_plugin.worker.runner import InferenceJob, ProcessCancelled, ProcessFailed, TrainingJob
from sleap_rtc_plugin.worker.state import Status, WorkerState

pytestmark = pytest.mark.slow


def _progress(events, name):
    return [e for e in events if e["kind"] == "progress" and e["event"] == name]


def test_training_streams_progress_and_writes_best_ckpt(trained_model):
    events = trained_model.events
    print(f"\ntiny 2-epoch single-instance training took {trained_model.seconds:.1f} s")
    assert len(_progress(events, "train_begin")) == 1
    assert len(_progress(events, "train_end")) == 1
    epoch_ends = _progress(events, "epoch_end")
    assert [e["epoch"] for e in epoch_ends] == [0, 1]
    assert any("train/loss" in e["logs"] for e in epoch_ends)
    assert all("val/loss" in e["logs"] for e in epoch_ends)
    assert not _progress(events, "batch_start")
    assert all(e["model"] == "single_instance" and e["n_models"] == 1 for e in epoch_ends)
    order = [e["event"] for e in events if e["kind"] in ("job", "progress") and e["event"] in ("model_begin", "train_begin", "train_end", "model_end")]
    assert order == ["model_begin", "train_begin", "train_end", "model_end"]
    assert any(e["kind"] == "log" for e in events)
    run_dir = trained_model.run_dir
    assert " " in str(run_dir)
    for name in ("best.ckpt", "training_config.yaml", "training_log.csv"):
        assert (run_dir / name).is_file(), name


@pytest.mark.parametrize("command", ["predict", "track"])
async def test_inference_on_trained_model(trained_model, sample_labels, tmp_path, command):
    pkg = sample_data.make_inference_package(sample_labels, [trained_model.run_dir], tmp_path / "pkg dir", command=command)
    spec = await asyncio.to_thread(open_package, pkg, tmp_path / "job dir")
    assert spec.kind == "track"
    events = []
    result = await InferenceJob("infer-1", spec, on_event=events.append).run()
    (predictions,) = result.predictions
    assert predictions.is_file() and " " in str(predictions)
    labels = sio.load_slp(predictions.as_posix())
    assert sum(len(lf.predicted_instances) for lf in labels.labeled_frames) > 0
    progress = [e for e in events if e["kind"] == "inference_progress"]
    assert progress and progress[-1]["n_processed"] == progress[-1]["n_total"] == 20


async def test_existing_run_dir_gets_suffix_and_is_read_back(trained_model, training_package, tmp_path):
    """sleap-nn appends -1 when the planned run dir already has best.ckpt."""
    spec = await asyncio.to_thread(open_package, training_package, tmp_path / "job")
    planned = trained_model.run_dir.name
    job = TrainingJob("again", spec, output_dir=trained_model.run_dir.parent, overrides=["trainer_config.max_epochs=1"])
    result = await job.run()
    assert result.run_dirs[0].name == f"{planned}-1"
    assert (result.run_dirs[0] / "best.ckpt").is_file()


async def test_stop_early_keeps_best_ckpt_and_worker_stays_busy_until_exit(sample_labels, tmp_path):
    pkg = sample_data.make_training_package(sample_labels, tmp_path / "p", epochs=50)
    spec = await asyncio.to_thread(open_package, pkg, tmp_path / "job")
    events = []
    job: TrainingJob

    def on_event(e):
        events.append(e)
        if e["kind"] == "progress" and e["event"] == "epoch_end" and e["epoch"] == 0:
            return job.stop_early()

    job = TrainingJob("stop-1", spec, on_event=on_event)
    state = WorkerState("w")
    seen = []
    state.add_observer(lambda s: seen.append((s.status, job.running)))
    state.reserve("c")
    state.start(job, "train", client_id="c")  # as the worker's JobSession does: start, await the engine, finish
    try:
        result = await job.run()
    finally:
        state.finish()
    assert result.stopped_early == ["single_instance"]
    assert (result.run_dirs[0] / "best.ckpt").is_file()
    epochs = [e["epoch"] for e in _progress(events, "epoch_end")]
    assert epochs and max(epochs) < 49
    assert _progress(events, "train_end")
    assert state.status is Status.AVAILABLE
    assert all(not running for status, running in seen if status is Status.AVAILABLE)


async def test_cancel_kills_the_process_group(sample_labels, tmp_path):
    pkg = sample_data.make_training_package(sample_labels, tmp_path / "p", epochs=50)
    spec = await asyncio.to_thread(open_package, pkg, tmp_path / "job")
    began = asyncio.Event()
    job = TrainingJob("cancel-1", spec, on_event=lambda e: began.set() if e.get("event") == "epoch_begin" else None)
    task = asyncio.create_task(job.run())
    await asyncio.wait_for(began.wait(), 240)
    pid = job.pid
    assert pid is not None and job.running
    await job.cancel(grace=10)
    with pytest.raises(ProcessCancelled):
        await task
    assert not job.running
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_sleap_nn_failure_is_a_one_line_job_failed(training_package, tmp_path):
    spec = await asyncio.to_thread(open_package, training_package, tmp_path / "job")
    job = TrainingJob("bad-1", spec, overrides=["trainer_config.optimizer_name=SGD"])
    with pytest.raises(ProcessFailed) as err:
        await job.run()
    message = str(err.value)
    assert message.startswith("sleap-nn train (single_instance) exited with code 1: ")
    assert "optimizer_name must be one of" in message
    assert "\n" not in message and err.value.tail
    assert not job.running
