"""The rough edges a new user hit (issue 15): each error one line, honest help, a biologist's words.

Everything here is cheap: real CLI subprocesses that fail before any worker is needed, the
real progress display fed the events sleap-nn sends, and sleap-io files re-pointed on disk.
The end-to-end runs are in test_cli_headless.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sleap_io as sio
from rich.console import Console

from fixtures_headless_data import make_video_labels, write_config
from sleap_rtc_plugin.client.api import JobEvent
from sleap_rtc_plugin.client.nn_config import apply_overrides
from sleap_rtc_plugin.client.progress import ProgressDisplay
from sleap_rtc_plugin.client.relink import relink_videos
from sleap_rtc_plugin.client.train_cli import local_ckpt_dir
from sleap_rtc_plugin.errors import UserError


def run(*argv: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "SLEAP_RTC_ICE_LOOPBACK": "1"})


def sleap_rtc(*argv: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return run("-m", "sleap_rtc_plugin", *argv, cwd=cwd, timeout=timeout)


@pytest.fixture
def robot(tmp_path) -> tuple[Path, Path]:
    labels, video = make_video_labels(tmp_path, n_frames=6, labeled=4)
    write_config(tmp_path / "single.yaml", labels_name="labels.slp")
    return labels, video


# -- sleap-nn's language: overrides and configs ------------------------------------------

def test_overrides_follow_hydra_rules():
    config = {"trainer_config": {"max_epochs": 2, "ckpt_dir": None}, "data_config": {"train_labels_path": ["a.slp"]}}
    apply_overrides(config, ["trainer_config.max_epochs=5", "+trainer_config.seed=3", "++model_config.x=[1,2]",
                             "trainer_config.ckpt_dir=runs", "data_config.train_labels_path=[b.slp]", "~trainer_config.seed"])
    assert config == {"trainer_config": {"max_epochs": 5, "ckpt_dir": "runs"}, "data_config": {"train_labels_path": ["b.slp"]},
                      "model_config": {"x": [1, 2]}}
    with pytest.raises(UserError, match=r"add it with \+trainer_config.seed=3"):
        apply_overrides(config, ["trainer_config.seed=3"])
    with pytest.raises(UserError, match="not an override"):
        apply_overrides(config, ["max_epochs"])


def test_model_goes_to_models_beside_the_labels_unless_the_config_says_where(tmp_path):
    labels = tmp_path / "p" / "labels.slp"
    assert local_ckpt_dir({}, labels) == tmp_path / "p" / "models"
    assert local_ckpt_dir({"trainer_config": {"ckpt_dir": "."}}, labels) == tmp_path / "p" / "models"
    assert local_ckpt_dir({"trainer_config": {"ckpt_dir": str(tmp_path / "runs")}}, labels) == tmp_path / "runs"


@pytest.mark.parametrize("argv, expected", [
    (["train", "single.yaml", "trainer_config.no_such_key=1"], "add it with +trainer_config.no_such_key=1"),
    (["train", "--config", "missing.yaml"], "missing.yaml does not exist"),
    (["train"], "give the training config"),
    (["train", "--config-name", "single", "--train-labels", "nope.slp"], "nope.slp do not exist"),
    (["track", "-i", "missing.mp4", "-m", "models/x"], "--data_path missing.mp4: no such file"),
    (["track", "-i", "robot.mp4", "-m", "."], None),
    (["client-train", "--pkg-path", "labels.slp", "--room-id", "r", "--token", "t"], "sleap-rtc train --config"),
])
def test_headless_mistakes_are_one_line(robot, argv, expected):
    labels, _ = robot
    if expected is None:  # a folder without best.ckpt
        expected = "no best.ckpt there"
    result = sleap_rtc(*argv, cwd=labels.parent)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sleap-rtc: error:"), result.stderr
    assert expected in lines[0]


def test_help_speaks_sleap_nn_and_is_honest_about_packages(tmp_path):
    train = sleap_rtc("train", "--help", cwd=tmp_path).stdout
    assert "--config PATH" in train and "--config-name" in train and "+key=value" in train and "--rtc-config" in train
    track = sleap_rtc("track", "--help", cwd=tmp_path).stdout
    for flag in ("--data_path", "--model_paths", "--frames", "--video_index", "--output_path", "--tracking", "--session-string", "--queue"):
        assert flag in track
    assert "==SUPPRESS==" not in track
    client_track = " ".join(sleap_rtc("client-track", "--help", cwd=tmp_path).stdout.split())
    assert "a .training_job.zip is a training package and is refused here" in client_track and "sleap-rtc track" in client_track


# -- returned labels point at the user's files -------------------------------------------

def test_relink_points_worker_paths_at_the_local_files(robot, tmp_path):
    """A predictions file as the worker writes it (its own copy of the video) is re-pointed by name."""
    labels_path, video = robot
    worker_copy = tmp_path / "worker" / "jobs" / "j1" / "package" / "inputs" / video.name
    worker_copy.parent.mkdir(parents=True)
    worker_copy.write_bytes(video.read_bytes())
    labels = sio.load_slp(labels_path.as_posix())
    labels.replace_filenames(filename_map={str(video): str(worker_copy)}, open_videos=False)
    received = tmp_path / "received.slp"
    labels.save(received.as_posix(), embed=False, verbose=False)
    worker_copy.unlink()  # the worker deletes its job dir
    assert relink_videos(received, {video.name: video}) == [video]
    back = sio.load_slp(received.as_posix())
    assert [str(v.filename) for v in back.videos] == [str(video)] and len(back.labeled_frames) == 4
    assert back.video[0] is not None  # it opens: frames come from the local video


# -- progress display ----------------------------------------------------------------------

def _display(**kw) -> tuple[ProgressDisplay, Console]:
    console = Console(record=True, width=120, force_terminal=kw.pop("terminal", False))
    return ProgressDisplay("job1", console=console, **kw), console


def test_first_epoch_shows_its_training_loss_one_frame_is_singular_and_errors_wait(capsys):
    display, _ = _display(plain=True)
    with display:
        display.update(JobEvent("progress", {"event": "epoch_begin", "epoch": 0, "max_epochs": 2}))
        for loss in (0.5, 0.3):
            display.update(JobEvent("progress", {"event": "batch_end", "epoch": 0, "logs": {"loss": loss}}))
        # what sleap-nn 0.3 sends at the end of epoch 1: no train/loss yet
        display.update(JobEvent("progress", {"event": "epoch_end", "epoch": 0, "max_epochs": 2, "logs": {"val/loss": 0.2}}))
        display.update(JobEvent("progress", {"n_processed": 1, "n_total": 1}))
        display.update(JobEvent("status", {"state": "failed", "message": "boom"}))
        display.update(JobEvent("error", {"code": "job_failed", "message": "boom"}))
    err = capsys.readouterr().err
    assert "epoch 1/2: loss 0.40000, val loss 0.20000" in err
    assert "predicted 1 frame\n" in err
    assert "boom" not in err  # the command prints the error once, itself


def test_finished_upload_bar_leaves_the_screen():
    display, console = _display(terminal=True)
    with display:
        display.update(JobEvent("transfer", {"name": "pkg.zip", "done": 50, "total": 100, "rate_mbps": 1.0}))
        assert len(display._progress.tasks) == 1
        display.update(JobEvent("status", {"state": "transferred", "message": "sent pkg.zip (0.1 MB at 1.0 MB/s)"}))
        assert display._progress.tasks == []
        display.update(JobEvent("progress", {"n_processed": 1, "n_total": 4}))
        assert [t.description for t in display._progress.tasks] == ["predict"]


# -- worker and service ------------------------------------------------------------------

def test_busy_port_at_worker_start_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = sleap_rtc("worker", "--port", str(port), "--status-port", "0", "--data-dir", str(tmp_path / "w"), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sleap-rtc: error: cannot start the worker") and "--port" in last and "--status-port" in last
    assert str(port) in last


def test_service_help_hides_internal_verbs(tmp_path):
    out = run("-m", "sleap_rtc_plugin.service.cli", "--help", cwd=tmp_path).stdout
    assert "render-examples" not in out and "==SUPPRESS==" not in out
    assert "status" in out


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="systemd runs here: the no-systemd message cannot show")
def test_service_status_without_systemd_is_one_line_and_exit_4(tmp_path):
    result = run("-m", "sleap_rtc_plugin.service.cli", "status", "--user", cwd=tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "systemd is not running" in lines[0] and "--no-service" in lines[0]


def test_connected_line_speaks_plainly_and_keeps_the_pair_for_the_log(capsys, caplog):
    import logging

    from sleap_rtc_plugin.client.api import JobEvent
    from sleap_rtc_plugin.client.progress import ProgressDisplay

    caplog.set_level(logging.INFO, logger="sleap_rtc_plugin.client.progress")
    detail = "path relay via TURN tcp: relay 203.0.113.2:50000 <-> host 10.1.0.2:4000 (relayed by TURN)"
    with ProgressDisplay("j1", plain=True) as display:
        display.update(JobEvent("status", {"state": "connected", "message": detail, "path": {"kind": "relay"}}))
    err = capsys.readouterr().err
    assert "relay server" in err and "203.0.113.2" not in err and "TURN" not in err
    assert detail in caplog.text
