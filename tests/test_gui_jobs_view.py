"""How a listed remote job reads in the Remote Jobs panel (no window needed)."""

from __future__ import annotations

from sleap_rtc_plugin.client.jobs_store import JobRecord
from sleap_rtc_plugin.gui import jobs_view


def test_each_state_reads_in_plain_words():
    r = JobRecord("j1", "train", models=["centroid", "centered_instance"], worker_name="gpu-box-1")
    cases = [
        (dict(state="queued", position=1), "queued: position 2 in the queue"),
        (dict(state="dispatched"), "connecting to gpu-box-1"),
        (dict(state="transferring"), "uploading"),
        (dict(state="running", epoch=3, epochs=10, eta_s=65), "running: epoch 3/10, ETA 1 min 05 s"),
        (dict(state="stopping", epoch=4, epochs=10), "stopping early: epoch 4/10"),
        (dict(state="succeeded"), "finished: results waiting on the worker"),
        (dict(state="acknowledged", fetched=True), "finished: results installed"),
        (dict(state="failed", message="sleap-nn exited with code 1"), "failed: sleap-nn exited with code 1"),
        (dict(state="cancelled"), "cancelled"),
    ]
    for changes, text in cases:
        for key, value in changes.items():
            setattr(r, key, value)
        assert jobs_view.state_text(r) == text
    assert jobs_view.row(r)[:4] == ["j1", "training", "centroid, centered_instance", "gpu-box-1"]


def test_show_log_has_the_tail_and_the_failure():
    r = JobRecord("j2", "track", state="failed", message="bad optimizer", error_code="job_failed", log_tail=["line 1", "line 2"])
    assert jobs_view.log_text(r) == "line 1\nline 2\n\njob_failed: bad optimizer"
    assert "no log lines" in jobs_view.log_text(JobRecord("j3", "train"))
    assert jobs_view.duration(3 * 3600 + 120) == "3 h 02 min" and jobs_view.when(None) == ""
