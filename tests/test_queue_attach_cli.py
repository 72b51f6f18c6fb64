"""Issue 19 item 4: ``--attach JOB_ID`` combines with ``--queue`` (it used to be refused:
"--queue submits a new job; drop it to --attach to an earlier one"). Following a job
still in the queue needs its package again, since the worker that takes it gets the
package from this client: without ``--pkg-path`` the answer is one actionable line."""

from __future__ import annotations

import subprocess
import sys


def run(*argv: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sleap_rtc_plugin", *argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_attach_with_queue_asks_for_the_package_in_one_line(tmp_path):
    result = run("client-train", "--attach", "job-1", "--queue", "--room-id", "r", "--token", "t", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sleap-rtc: error: --attach with --queue also needs --pkg-path PKG"), result.stderr
    missing = run("client-train", "--attach", "job-1", "--queue", "--pkg-path", str(tmp_path / "gone.zip"), "--room-id", "r", "--token", "t", cwd=tmp_path)
    assert "gone.zip does not exist" in missing.stderr


def test_help_says_attach_combines_with_queue(tmp_path):
    assert "with --attach JOB_ID, follow a" in run("client-train", "--help", cwd=tmp_path).stdout.replace("\n", " ").replace("  ", " ")
