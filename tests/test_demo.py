"""`sleap-rtc demo`: the main job on the embedded default, as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sleap_io as sio

pytestmark = pytest.mark.slow


def test_demo_trains_and_predicts_remotely(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "sleap_rtc_plugin", "demo", "--workdir", str(tmp_path), "--epochs", "2", "--frames", "16", "--no-progress"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Demo finished" in out.stdout
    models = list((tmp_path / "project" / "models").iterdir())
    assert len(models) == 1 and (models[0] / "best.ckpt").is_file()
    predictions = list((tmp_path / "project" / "predictions").glob("*.predictions.slp"))
    assert len(predictions) == 1
    labels = sio.load_slp(str(predictions[0]))
    n = sum(len(lf.predicted_instances) for lf in labels.labeled_frames)
    assert n > 0 and f"({n} predicted instances)" in out.stdout
    assert "epoch 2" in out.stderr  # live progress from the worker reached the terminal
    assert "Traceback" not in out.stderr
