"""Issue 19 item 1: a job resumed from a final-epoch checkpoint delivers the model.

Killed after its last epoch's checkpoint reached the client, a queued job is requeued
and resumed from that checkpoint with zero epochs left; sleap-nn then dies opening a
``best.ckpt`` it never wrote. The worker finishes the model from the checkpoint instead
(real sleap-nn below: train, resume the final checkpoint, predict with the result).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time

import pytest
import sleap_io as sio

from fixtures_data import sample_labels, sample_root  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.worker.finish import complete_run_dir, is_final
from sleap_rtc_plugin.worker.package import open_package
from sleap_rtc_plugin.worker.runner import InferenceJob, ProcessFailed, TrainingJob, hydra_value

EPOCHS = 3
pytestmark = pytest.mark.slow


def test_is_final():
    assert is_final(2, 3) and is_final(5, 3)
    assert not is_final(1, 3) and not is_final(None, 3) and not is_final(2, None) and not is_final(0, 0)


def test_complete_run_dir_only_completes_a_run_dir_sleap_nn_set_up_now(tmp_path):
    out, ckpt = tmp_path / "models", tmp_path / "relayed.ckpt"
    ckpt.write_bytes(b"weights")
    started = time.time()
    assert complete_run_dir(out, "run.single_instance", ckpt, started) is None  # nothing set up: a real failure
    old = out / "run.single_instance"
    old.mkdir(parents=True)
    (old / "training_config.yaml").write_text("old: run\n")
    os.utime(old / "training_config.yaml", (started - 3600, started - 3600))
    assert complete_run_dir(out, "run.single_instance", ckpt, started) is None  # not this run's
    (out / "other.centroid").mkdir()
    (out / "other.centroid" / "training_config.yaml").write_text("x: 1\n")
    assert complete_run_dir(out, "run.single_instance", ckpt, started) is None  # not this model's
    fresh = out / "run.single_instance-1"
    fresh.mkdir()
    (fresh / "training_config.yaml").write_text("x: 1\n")
    assert complete_run_dir(out, "run.single_instance", ckpt, started) == fresh
    assert (fresh / "best.ckpt").read_bytes() == b"weights" and not (fresh / ".best.ckpt.partial").exists()
    assert complete_run_dir(out, "run.single_instance", ckpt, started) is None  # has best.ckpt now: never overwritten


@pytest.fixture
async def final_checkpoint(sample_labels, tmp_path):  # noqa: F811
    """A 3-epoch job trained to the end with ``save_last``; its final ``last.ckpt``, as relayed."""
    pkg = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=EPOCHS, steps_per_epoch=10)
    spec = await asyncio.to_thread(open_package, pkg, tmp_path / "attempt-1")
    events: list[dict] = []
    result = await TrainingJob("job", spec, on_event=events.append, overrides=["trainer_config.model_ckpt.save_last=true"],
                               output_dir=tmp_path / "attempt-1" / "models").run()
    assert [e["epoch"] for e in events if e.get("event") == "epoch_end"] == [0, 1, 2]
    relayed = tmp_path / "client copy" / "checkpoint-single_instance.ckpt"
    relayed.parent.mkdir()
    shutil.copyfile(result.run_dirs[0] / "last.ckpt", relayed)
    return pkg, relayed


async def resume(pkg, relayed, job_dir, **kw):
    spec = await asyncio.to_thread(open_package, pkg, job_dir)
    head = spec.models[0].head
    assert is_final(EPOCHS - 1, spec.models[0].max_epochs)
    job = TrainingJob("job", spec, overrides=["trainer_config.model_ckpt.save_last=true"], output_dir=job_dir / "models",
                      model_overrides={head: [f"trainer_config.resume_ckpt_path={hydra_value(relayed.as_posix())}"]}, **kw)
    return spec, await job.run()


async def test_resume_from_the_final_checkpoint_delivers_a_usable_model(final_checkpoint, sample_labels, tmp_path):  # noqa: F811
    pkg, relayed = final_checkpoint
    # As before the fix: sleap-nn trains zero epochs and fails for want of best.ckpt.
    with pytest.raises(ProcessFailed, match="best.ckpt"):
        await resume(pkg, relayed, tmp_path / "attempt-2-plain")

    spec, result = await resume(pkg, relayed, tmp_path / "attempt-2", finish_from={"single_instance": relayed})
    (run_dir,) = result.run_dirs
    assert run_dir.parent == tmp_path / "attempt-2" / "models" and run_dir.name.startswith(spec.models[0].run_name)
    assert (run_dir / "best.ckpt").read_bytes() == relayed.read_bytes()
    assert (run_dir / "training_config.yaml").is_file()

    # The delivered model predicts (what the client installs it for).
    infer = sample_data.make_inference_package(sample_labels, [run_dir], tmp_path / "infer pkg", command="track")
    ispec = await asyncio.to_thread(open_package, infer, tmp_path / "infer job")
    (predictions,) = (await InferenceJob("infer", ispec).run()).predictions
    labels = sio.load_slp(predictions.as_posix())
    assert sum(len(lf.predicted_instances) for lf in labels.labeled_frames) > 0
