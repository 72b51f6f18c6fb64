"""`sleap-rtc client-train` as a person runs it: Ctrl-C detaches, `--attach` fetches the model."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from fixtures_e2e import worker_process  # noqa: F401
from fixtures_data import sample_labels, sample_root  # noqa: F401
from sleap_rtc_plugin import sample_data

pytestmark = pytest.mark.slow


def client(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sleap_rtc_plugin", *args], stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )


def test_ctrl_c_detaches_and_attach_fetches_the_results(worker_process, sample_labels, tmp_path):  # noqa: F811
    package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=4)
    project = tmp_path / "project"
    proc = client("client-train", "--session-string", worker_process.session_string, "--pkg-path", str(package),
                  "--project-dir", str(project), "--no-progress")
    seen = []
    deadline = time.monotonic() + 180
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("epoch 1") or time.monotonic() > deadline:
            break
    assert any(line.startswith("epoch 1") for line in seen), "".join(seen)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    match = re.search(r"--attach (\w+)", out)
    assert match and "keeps running on the worker" in out
    job_id = match.group(1)
    assert not (project / "models").exists()

    for _ in range(120):  # the job finishes on the worker without its client
        again = subprocess.run(
            [sys.executable, "-m", "sleap_rtc_plugin", "client-train", "--session-string", worker_process.session_string,
             "--attach", job_id, "--project-dir", str(project), "--no-progress"],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )
        assert again.returncode == 0, again.stderr
        if "model:" in again.stdout:
            break
        time.sleep(1)
    models = list((project / "models").iterdir())
    assert len(models) == 1 and (models[0] / "best.ckpt").is_file()
    assert str(models[0]) in again.stdout


def test_track_inputs_named_by_file_name_and_checked(tmp_path):
    from sleap_rtc_plugin.client.cli import parse_inputs
    from sleap_rtc_plugin.errors import UserError

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "clip.mp4").write_bytes(b"v")
    (tmp_path / "clip.mp4").write_bytes(b"w")
    assert parse_inputs([str(tmp_path / "a" / "clip.mp4")]) == {"clip.mp4": tmp_path / "a" / "clip.mp4"}
    with pytest.raises(UserError, match="no such file"):
        parse_inputs([str(tmp_path / "missing.mp4")])
    with pytest.raises(UserError, match="also named 'clip.mp4'"):
        parse_inputs([str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "clip.mp4")])
