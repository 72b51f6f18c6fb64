"""Outbox: results survive a restart and leave only on ack."""

from __future__ import annotations

import asyncio
import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from sleap_rtc_plugin.worker.outbox import Outbox, OutboxError, zip_dir_deterministic


def _run_dir(root: Path, name="240101_120000.single_instance.n=20") -> Path:
    d = root / "models" / name
    (d / "viz").mkdir(parents=True)
    (d / "best.ckpt").write_bytes(os.urandom(50_000))
    (d / "training_config.yaml").write_text("model_config: {}\n")
    (d / "viz" / "a.png").write_bytes(b"png")
    return d


def test_put_get_survives_restart_and_ack_removes(tmp_path):
    data = tmp_path / "data dir"
    run = _run_dir(tmp_path)
    preds = tmp_path / "out.predictions.slp"
    preds.write_bytes(b"slp" * 100)
    entry = Outbox(data).put("job-1", job_type="train", run_dirs=[run], files=[preds], metadata={"client": "c1"})
    assert [f.name for f in entry.files] == [f"{run.name}.zip", "out.predictions.slp"]
    assert [f.kind for f in entry.files] == ["model", "predictions"]

    reopened = Outbox(data)
    got = reopened.get("job-1")
    assert got is not None and got.metadata == {"client": "c1"} and got.job_type == "train"
    for f in got.files:
        assert hashlib.sha256(got.file_path(f.name).read_bytes()).hexdigest() == f.sha256
        assert got.file_path(f.name).stat().st_size == f.size
    with zipfile.ZipFile(got.file_path(f"{run.name}.zip")) as zf:
        assert sorted(zf.namelist()) == sorted(
            f"{run.name}/{p}" for p in ("best.ckpt", "training_config.yaml", "viz/a.png")
        )
        assert zf.read(f"{run.name}/best.ckpt") == (run / "best.ckpt").read_bytes()
    assert [e.job_id for e in reopened.list()] == ["job-1"]
    assert reopened.verify("job-1")

    assert reopened.ack("job-1") is True
    assert reopened.get("job-1") is None and reopened.list() == []
    assert not (data / "outbox" / "job-1").exists()
    assert Outbox(data).ack("job-1") is False


def test_model_zip_is_deterministic(tmp_path):
    run = _run_dir(tmp_path)
    a = zip_dir_deterministic(run, tmp_path / "a.zip")
    os.utime(run / "best.ckpt", (0, 0))
    b = zip_dir_deterministic(run, tmp_path / "b.zip")
    assert a.read_bytes() == b.read_bytes()
    sha = [Outbox(tmp_path / f"d{i}").put("j", job_type="train", run_dirs=[run]).files[0].sha256 for i in range(2)]
    assert sha[0] == sha[1]


def test_verify_detects_tampering(tmp_path):
    box = Outbox(tmp_path)
    f = tmp_path / "p.slp"
    f.write_bytes(b"abc")
    entry = box.put("j", job_type="track", files=[f])
    entry.file_path("p.slp").write_bytes(b"abd")
    assert box.verify("j") is False


@pytest.mark.parametrize("job_id", ["../x", "", ".hidden", "a/b", "x" * 129])
def test_bad_job_ids_rejected(tmp_path, job_id):
    with pytest.raises(OutboxError, match="invalid job id"):
        Outbox(tmp_path).put(job_id, job_type="train")


def test_failed_put_leaves_nothing_and_duplicates_refused(tmp_path):
    box = Outbox(tmp_path)
    with pytest.raises(OutboxError, match="does not exist"):
        box.put("j", job_type="train", run_dirs=[tmp_path / "missing"])
    assert box.list() == [] and list((tmp_path / "outbox").iterdir()) == []
    box.put("j", job_type="train")
    with pytest.raises(OutboxError, match="ack it"):
        box.put("j", job_type="train")


def test_half_written_entries_are_ignored_and_cleaned(tmp_path):
    Outbox(tmp_path)  # creates outbox/
    (tmp_path / "outbox" / ".tmp-j-1-2").mkdir()
    (tmp_path / "outbox" / "broken").mkdir()
    (tmp_path / "outbox" / "broken" / "manifest.json").write_text("{not json")
    box2 = Outbox(tmp_path)
    assert box2.list() == []
    assert not (tmp_path / "outbox" / ".tmp-j-1-2").exists()


async def test_async_wrappers(tmp_path):
    box = Outbox(tmp_path)
    await box.aput("j", job_type="train", run_dirs=[_run_dir(tmp_path)])
    assert [e.job_id for e in await asyncio.to_thread(box.list)] == ["j"]
    assert (await box.aget("j")).job_id == "j"
    assert await box.aack("j")
