"""The job's stages as the dialog shows them, from the events a ``JobHandle`` emits
(issue 20 item 7): each bar ends full where its stage ends, MB only, no transport words.
The real upload's wording is checked end to end in test_gui_dialog_detach.py."""

from __future__ import annotations

import re

import pytest

from fixtures_gui import qapp_module  # noqa: F401

pytestmark = pytest.mark.gui

JARGON = re.compile(r"\b(via|direct|data channel|sctp|ice|MiB|Job receiving)\b", re.IGNORECASE)


def _tracker(kind="train"):
    from qtpy import QtWidgets

    from sleap_rtc_plugin.gui.dialogs.stages import StageTracker, StageView

    return StageTracker(StageView(), QtWidgets.QLabel(), kind)


def _ev(kind, **data):
    from sleap_rtc_plugin.client.api import JobEvent

    return JobEvent(kind, data)


def test_small_upload_ends_full_then_training_epochs_with_eta_then_download(qapp_module):  # noqa: F811
    t = _tracker()
    t.packaging("Building the training package…")
    t.packaging_progress(3, 3)
    t.apply(_ev("status", state="connecting", message="connecting to gpu-box-1", worker="w-1"))
    t.apply(_ev("status", state="connected", message="host 10.0.0.2 <-> host 10.0.0.3 via direct", path={"kind": "host"}))
    t.apply(_ev("status", state="transferring", message="sending project.slp.training_job.zip (0.3 MB)"))
    t.apply(_ev("transfer", direction="upload", name="project.slp.training_job.zip", done=150_000, sent=150_000, total=300_000, rate_mbps=1.5))
    assert t.view.stage.text() == "Uploading" and t.view.bar.value() == 500
    assert t.view.bar.text() == "0.1 MB of 0.3 MB, 1.5 MB/s"
    t.apply(_ev("transfer", direction="upload", name="project.slp.training_job.zip", done=300_000, sent=300_000, total=300_000, rate_mbps=1.5))
    t.apply(_ev("status", state="transferred", message="sent project.slp.training_job.zip (0.3 MB at 4.0 MB/s) via direct", via="direct"))
    # the finished upload's bar is full and says so: never "0%  0 / 1 MB"
    assert t.view.stage.text() == "Uploaded" and t.view.bar.value() == t.view.bar.maximum() == 1000
    assert t.view.bar.text() == "0.3 MB"
    assert re.fullmatch(r"Sent 0\.3 MB to gpu-box-1 in \d+\.\d s( \(\d+\.\d+ MB/s\))?\.", t.status.text()), t.status.text()

    t.apply(_ev("status", state="queued", message="position 1 in the queue", position=1))
    assert t.status.text() == "Queued: position 2 in the queue."
    t.apply(_ev("status", state="running", message="train job started on gpu-box-1"))
    t.apply(_ev("progress", event="train_begin", model="single_instance", model_index=0, n_models=1, max_epochs=4))
    assert t.view.stage.text() == "Training" and t.view.bar.value() == 0 and t.view.bar.text() == "epoch 0/4"
    t.apply(_ev("progress", event="epoch_end", epoch=0, model="single_instance", model_index=0, n_models=1, max_epochs=4, logs={}))
    assert t.view.bar.value() == 250
    assert re.fullmatch(r"Training single_instance: epoch 1/4, about \d+ s left\.", t.status.text()), t.status.text()
    t.apply(_ev("progress", event="epoch_end", model="single_instance", n_models=1, max_epochs=4, logs={}))  # no epoch field: counted
    assert t.view.bar.value() == 500
    t.apply(_ev("progress", event="train_end", model="single_instance", n_models=1, max_epochs=4))
    assert t.view.bar.value() == 1000
    t.apply(_ev("status", state="succeeded", message="train job finished"))
    t.apply(_ev("status", state="receiving", message="receiving single_instance.zip (1.2 MB)"))
    assert t.view.stage.text() == "Downloading" and t.status.text() == "Receiving single_instance.zip (1.2 MB)…"
    t.done("Training finished: 1 model(s) saved in models/.")
    assert t.view.stage.text() == "Done" and t.view.bar.value() == t.view.bar.maximum()

    stages = [stage for stage, _ in t.history]
    order = ["Packaging", "Connecting", "Uploading", "Queued", "Training", "Downloading", "Done"]
    assert [s for s in dict.fromkeys(stages)] == order, stages
    assert not [text for _, text in t.history if JARGON.search(text)], t.history
    assert not any("MiB" in text for _, text in t.history)


def test_tracking_shows_frames_and_a_cached_input_in_words(qapp_module):  # noqa: F811
    t = _tracker("track")
    t.apply(_ev("status", state="connecting", message="connecting to gpu-box-1 (attempt 1)"))
    t.apply(_ev("status", state="transferring", message="sending video.mp4 (50.0 MB)"))
    t.apply(_ev("status", state="transferred", message="video.mp4 is already on the worker", via="cache"))
    assert t.status.text().endswith("was already on gpu-box-1: nothing to send.")
    t.apply(_ev("status", state="running", message="track job started"))
    assert t.stage == "Predicting"
    t.apply(_ev("progress", n_processed=30, n_total=120, rate=10.0, eta=9.0))
    assert t.view.bar.value() == 250 and t.view.bar.text() == "30 / 120 frames, about 9 s left"
