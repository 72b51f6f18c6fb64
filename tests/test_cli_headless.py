"""``sleap-rtc train`` / ``track`` as a sleap-nn user runs them: real CLI subprocesses, a real worker.

The data is what most labs have: ``labels.slp`` referencing an external ``robot.mp4``
(no embedded frames) and a sleap-nn config next to it. One real training (module
fixture) feeds the tracking tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import sleap_io as sio
import yaml

from fixtures_e2e import WorkerProcess
from fixtures_headless_data import make_video_labels, write_config

pytestmark = pytest.mark.slow


@dataclass
class Project:
    root: Path
    labels: Path
    video: Path
    config: Path


def sleap_rtc(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sleap_rtc_plugin", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, "SLEAP_RTC_ICE_LOOPBACK": "1"})


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    proc = WorkerProcess(tmp_path_factory.mktemp("headless worker") / "data")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("robot project")
    labels, video = make_video_labels(root)
    config = write_config(root / "single.yaml", labels_name="labels.slp", epochs=2)
    return Project(root, labels, video, config)


@pytest.fixture(scope="module")
def trained(worker, project):
    """One real training: config as the first word, overrides before and after the other flags."""
    before = project.labels.read_bytes()
    result = sleap_rtc("train", "single.yaml", "trainer_config.max_epochs=1", "--session-string", worker.session_string, "--no-progress",
                       "+trainer_config.seed=7", "trainer_config.ckpt_dir=trained models", "trainer_config.run_name=robot1", cwd=project.root)
    assert result.returncode == 0, result.stdout + result.stderr
    return result, before


def _videos(path: Path) -> list[str]:
    return [str(v.filename) for v in sio.load_slp(path.as_posix(), open_videos=False).videos]


def test_train_from_labels_and_config_lands_where_sleap_nn_would(trained, project):
    result, before = trained
    run_dir = project.root / "trained models" / "robot1"  # trainer_config.ckpt_dir / run_name, from the working folder
    assert f"Model saved to {run_dir}" in result.stdout
    assert (run_dir / "best.ckpt").is_file()
    config = yaml.safe_load((run_dir / "training_config.yaml").read_text())
    assert config["trainer_config"]["max_epochs"] == 1 and config["trainer_config"]["seed"] == 7
    assert "epoch 1/1: loss" in result.stderr  # the first epoch shows its training loss
    assert not (project.root / "models").exists()  # no ad-hoc folder beside it
    assert project.labels.read_bytes() == before  # the user's labels are read, never rewritten
    slps = sorted(run_dir.glob("*.slp"))
    assert slps, "sleap-nn returns its train/val labels with the model"
    for slp in slps:  # returned labels point at the user's own video
        assert _videos(slp) == [str(project.video)], slp


def test_train_through_the_queue_lands_in_the_same_place(trained, worker, project):
    """``--queue``: the coordinator picks the worker; the model still lands where sleap-nn would put it."""
    result = sleap_rtc("train", "--config", "single.yaml", "--queue", "--session-string", worker.session_string, "--no-progress",
                       "trainer_config.max_epochs=1", "trainer_config.ckpt_dir=queued models", "trainer_config.run_name=q1", cwd=project.root)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = project.root / "queued models" / "q1"
    assert (run_dir / "best.ckpt").is_file() and f"Model saved to {run_dir}" in result.stdout
    assert "queued" in result.stderr  # the queue, not a direct pick, placed it


def test_track_a_whole_video_writes_where_sleap_nn_would(trained, worker, project):
    result = sleap_rtc("track", "--data_path", "robot.mp4", "--model_paths", "trained models/robot1", "--peak_threshold", "0",
                       "--session-string", worker.session_string, "--no-progress", cwd=project.root)
    assert result.returncode == 0, result.stdout + result.stderr
    out = project.root / "robot.predictions.slp"  # sleap-nn track's default for robot.mp4
    assert f"Predictions saved to {out}" in result.stdout
    predicted = sio.load_slp(out.as_posix())
    assert [str(v.filename) for v in predicted.videos] == [str(project.video)] and project.video.is_file()
    assert {lf.frame_idx for lf in predicted.labeled_frames if lf.predicted_instances} == set(range(24))
    assert "predicted 24 frames" in result.stderr


def test_track_a_frame_range_of_a_labels_video(trained, worker, project):
    """``--video_index`` on a .slp sends that video itself (cached since the last test); ``--frames`` picks the range."""
    out = project.root / "out dir" / "range.slp"
    result = sleap_rtc("track", "-i", str(project.labels), "--video_index", "0", "--frames", "3-7", "-m", "trained models/robot1",
                       "--peak_threshold", "0", "-o", str(out), "--session-string", worker.session_string, "--no-progress", cwd=project.root)
    assert result.returncode == 0, result.stdout + result.stderr
    predicted = sio.load_slp(out.as_posix())
    assert {lf.frame_idx for lf in predicted.labeled_frames if lf.predicted_instances} == {3, 4, 5, 6, 7}
    assert [str(v.filename) for v in predicted.videos] == [str(project.video)]
    assert "robot.mp4 is already on the worker" in result.stderr  # sent once, by content
    assert "via " not in result.stderr and "datachannel" not in result.stderr


def test_a_remote_error_is_printed_once_and_names_the_fix(worker, project, tmp_path):
    """A package whose jobs.yaml names inputs/robot.mp4, sent without it: one line, suggesting --input."""
    model = project.root / "trained models" / "robot1"
    if not (model / "best.ckpt").is_file():
        pytest.skip("needs the trained model")
    pkg = tmp_path / "robot.inference_job.zip"
    with zipfile.ZipFile(pkg, "w") as zf:
        zf.write(model / "best.ckpt", "models/robot1/best.ckpt")
        zf.write(model / "training_config.yaml", "models/robot1/training_config.yaml")
        zf.writestr("jobs.yaml", yaml.safe_dump({"inference": [{"data_path": "inputs/robot.mp4", "models": ["models/robot1"]}]}))
    result = sleap_rtc("client-track", "--pkg-path", str(pkg), "--session-string", worker.session_string, "--no-progress", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if "robot.mp4" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sleap-rtc: error:") and "--input robot.mp4" in lines[0]


def test_demo_with_labels_on_an_external_video(tmp_path, project):
    """``demo --labels`` with a video-backed labels file embeds the frames, and its predictions point at that video."""
    result = sleap_rtc("demo", "--labels", str(project.labels), "--epochs", "1", "--workdir", str(tmp_path / "demo"), "--no-progress",
                       cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if "predictions:" in line)
    predictions = Path(line.split("predictions:", 1)[1].split(" (", 1)[0].strip())
    assert _videos(predictions) == [str(project.video)]
    assert "HMAC" not in result.stdout and "fingerprint" not in result.stdout and "via direct" not in result.stderr
