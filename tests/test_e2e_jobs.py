"""A real coordinator, real workers and a real client on loopback, running real sleap-nn.

Covers the worker's job lifecycle as a user meets it: train and get the model back,
predict and get predictions back, a busy worker says so, Stop Early keeps the best
model, Cancel kills the job, a client that leaves can come back for its results,
and a hostile package is refused with a clear message.
"""

from __future__ import annotations

import asyncio
import zipfile
from pathlib import Path

import pytest
import sleap_io as sio

from fixtures_e2e import collect, coordinator, cpu_worker, first_epoch, make_worker, project, room, spec_for  # noqa: F401
from fixtures_data import sample_labels, sample_root, trained_model, training_package  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import RemoteError, attach, submit_inference, submit_training
from sleap_rtc_plugin.peer.secrets import env_var_name

pytestmark = pytest.mark.slow








async def test_train_remotely_and_get_the_model(cpu_worker, project, training_package):  # noqa: F811
    handle = submit_training(training_package, spec_for(cpu_worker), project_dir=project)
    sessions: list = []

    def keep_session(event) -> bool:
        if not sessions and cpu_worker.sessions:
            sessions.extend(cpu_worker.sessions.values())
        return False

    events = await collect(handle, until=keep_session)
    outcome = await handle.result()

    # Lines travel batched (worker/log_batch.py) and arrive one event per line, in
    # sleap-nn's order: the last 200 are exactly the worker's own tail of the job's output.
    lines = [e.data["line"] for e in events if e.kind == "log"]
    tail = sessions[0].replay.tail(200)
    assert len(lines) > len(tail) == 200
    assert lines[-200:] == tail and not any("\n" in line for line in lines)
    assert [d.parent for d in outcome.model_dirs] == [project / "models"]
    run_dir = outcome.model_dirs[0]
    assert (run_dir / "best.ckpt").stat().st_size > 0
    assert (run_dir / "training_config.yaml").is_file()
    kinds = [e.data.get("event") for e in events if e.kind == "progress"]
    assert kinds.count("epoch_end") == 2 and "train_begin" in kinds and "train_end" in kinds
    assert any(e.kind == "transfer" and e.data["done"] == e.data["total"] for e in events)
    # The client acknowledged, so the worker's outbox let go of the results.
    for _ in range(50):
        if not cpu_worker.outbox.list():
            break
        await asyncio.sleep(0.1)
    assert cpu_worker.outbox.list() == []
    assert cpu_worker.state.status.value == "available"


async def test_predict_remotely_returns_predictions(cpu_worker, project, trained_model, sample_labels, tmp_path):  # noqa: F811
    package = sample_data.make_inference_package(sample_labels, [trained_model.run_dir], tmp_path / "pkg")
    handle = submit_inference(package, spec_for(cpu_worker), project_dir=project)
    events = await collect(handle)
    outcome = await handle.result()

    assert outcome.predictions is not None and outcome.predictions.parent == project / "predictions"
    labels = sio.load_slp(str(outcome.predictions))
    assert sum(len(lf.predicted_instances) for lf in labels.labeled_frames) > 0
    assert any(e.kind == "progress" and "n_processed" in e.data for e in events)


async def test_busy_worker_rejects_and_stop_early_keeps_best_model(cpu_worker, project, sample_labels, tmp_path):  # noqa: F811
    long_package = sample_data.make_training_package(sample_labels, tmp_path / "long", epochs=200)
    first = submit_training(long_package, spec_for(cpu_worker), project_dir=project)
    await collect(first, until=first_epoch)

    second = submit_training(long_package, spec_for(cpu_worker), project_dir=tmp_path / "other")
    with pytest.raises(RemoteError) as info:
        await second.result()
    assert info.value.code == "busy"
    assert "busy training job" in str(info.value) and "pick another worker" in str(info.value)

    await first.stop_early()
    rest = await collect(first)
    outcome = await first.result()
    epochs = [e for e in rest if e.kind == "progress" and e.data.get("event") == "epoch_end"]
    assert len(epochs) < 100
    assert (outcome.model_dirs[0] / "best.ckpt").is_file()


async def test_cancel_kills_the_job_and_frees_the_worker(cpu_worker, project, sample_labels, tmp_path):  # noqa: F811
    package = sample_data.make_training_package(sample_labels, tmp_path / "long", epochs=200)
    handle = submit_training(package, spec_for(cpu_worker), project_dir=project)
    await collect(handle, until=first_epoch)
    engine = cpu_worker.job.engine
    await handle.cancel()
    with pytest.raises(RemoteError) as info:
        await handle.result()
    assert info.value.code == "cancelled"  # the client's word for a cancel its user asked for (job_cancelled: from elsewhere)
    assert not engine.running
    assert cpu_worker.state.status.value == "available"
    assert not (project / "models").exists()


async def test_client_leaves_then_attaches_and_gets_results_once(cpu_worker, project, sample_labels, tmp_path):  # noqa: F811
    package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=3)
    handle = submit_training(package, spec_for(cpu_worker), project_dir=project)
    await collect(handle, until=first_epoch)
    await handle.detach()
    outcome = await handle.result()
    assert outcome.detached and not outcome.model_dirs

    # The job keeps running without its client and parks its results in the outbox.
    for _ in range(600):
        if cpu_worker.outbox.get(handle.job_id) is not None:
            break
        await asyncio.sleep(0.1)
    assert cpu_worker.outbox.get(handle.job_id) is not None

    again = attach(handle.job_id, spec_for(cpu_worker), project_dir=project)
    await collect(again)
    fetched = await again.result()
    assert len(fetched.model_dirs) == 1 and (fetched.model_dirs[0] / "best.ckpt").is_file()
    for _ in range(50):
        if cpu_worker.outbox.get(handle.job_id) is None:
            break
        await asyncio.sleep(0.1)
    assert cpu_worker.outbox.get(handle.job_id) is None

    third = attach(handle.job_id, spec_for(cpu_worker), project_dir=project)
    with pytest.raises(RemoteError) as info:
        await third.result()
    assert info.value.code == "unknown_job"
    assert len(list((project / "models").iterdir())) == 1


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"../evil.sh": b"rm -rf ~"}, "points outside the package"),
        ({"/etc/cron.d/x": b"* * * * * root x"}, "absolute path"),
        ({"jobs.yaml": b"training: []\ninference: []\n"}, "no training and no inference"),
    ],
)
async def test_malformed_package_is_refused_clearly(make_worker, project, tmp_path, entries, message):  # noqa: F811
    worker = await make_worker("strict")
    package = tmp_path / "bad.slp.training_job.zip"
    with zipfile.ZipFile(package, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    handle = submit_training(package, spec_for(worker), project_dir=project)
    with pytest.raises(RemoteError) as info:
        await handle.result()
    assert info.value.code == "job_failed"
    assert "package rejected" in str(info.value) and message in str(info.value)
    assert worker.state.status.value == "available"
    assert not Path(worker.data_dir / "jobs" / handle.job_id).exists()


async def test_room_secret_is_enforced_end_to_end(make_worker, project, training_package, monkeypatch):  # noqa: F811
    worker = await make_worker("guarded", secret="correct horse")
    monkeypatch.delenv(env_var_name(worker.room_id))  # a client that has only the room id and token
    for secret, code in [(None, "missing_secret"), ("wrong", None)]:
        handle = submit_training(training_package, spec_for(worker, with_secret=False, room_secret=secret), project_dir=project)
        with pytest.raises(RemoteError) as info:
            await handle.result()
        if code:
            assert info.value.code == code
        assert "secret" in str(info.value).lower()
    assert worker.state.status.value == "available"


async def test_predict_on_a_whole_video_sends_it_once(cpu_worker, project, trained_model, sample_labels, tmp_path):  # noqa: F811
    """"Entire video" sends the video file itself beside the package; the next job on it moves no video bytes."""
    import imageio.v3 as iio
    import numpy as np

    from sleap_rtc_plugin.gui import packaging

    gray = np.stack([np.squeeze(sio.load_slp(str(sample_labels)).video[i]) for i in range(12)])
    frames = np.repeat(gray[..., None], 3, axis=-1)
    clip = tmp_path / "clip.mp4"
    iio.imwrite(clip, frames, fps=10, codec="libx264", plugin="pyav")
    skeleton = sio.load_slp(str(sample_labels)).skeletons[0]
    video = sio.Video.from_filename(str(clip))
    labels = sio.Labels(videos=[video], skeletons=[skeleton])
    request = packaging.InferenceRequest(labels=labels, labels_filename=str(project / "clip.slp"), model_dirs=[trained_model.run_dir],
                                         frames={0: list(range(len(video)))})
    package = packaging.write_inference_package(request, tmp_path / "pkg")
    assert package.inputs == {"clip.mp4": clip}
    with zipfile.ZipFile(package.path) as zf:
        assert not any(n.endswith(".slp") for n in zf.namelist())  # no frames embedded

    vias = []
    for _ in range(2):
        handle = submit_inference(package.path, spec_for(cpu_worker), project_dir=project, inputs=package.inputs)
        events = await collect(handle)
        outcome = await handle.result()
        vias.append([e.data.get("via") for e in events if e.kind == "status" and "clip.mp4" in e.data.get("message", "") and e.data.get("state") == "transferred"])
        predicted = sio.load_slp(str(outcome.prediction_files[0]))
        assert {lf.frame_idx for lf in predicted.labeled_frames if lf.predicted_instances} == set(range(len(video)))
        assert Path(predicted.videos[0].filename).name == "clip.mp4"
    assert vias[0] != ["cache"] and vias[1] == ["cache"]
    assert packaging.predicted_videos(outcome.prediction_files[0], request) == [0]


async def test_submit_announcing_another_package_is_refused_at_once(cpu_worker, project, training_package, monkeypatch):  # noqa: F811
    """The worker answers a job_submit whose package hash matches no file it received without waiting for more files."""
    import time

    from sleap_rtc_plugin.client import job_handle

    real = job_handle.JobSubmit
    monkeypatch.setattr(job_handle, "JobSubmit", lambda **kw: real(**{**kw, "package_sha256": "0" * 64}))
    handle = submit_training(training_package, spec_for(cpu_worker), project_dir=project)
    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        await handle.result()
    assert info.value.code == "package_mismatch"
    assert time.monotonic() - started < 9  # the worker's wait for a missing file is 10 s: it did not wait
