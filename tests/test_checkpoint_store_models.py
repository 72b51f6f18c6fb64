"""Issue 19 item 2 (client side): one checkpoint per model of a top-down job.

The client used to keep only the newest checkpoint of a job, so the centered-instance
model's first checkpoint deleted the finished centroid model's final one, and a requeued
attempt had to retrain the centroid. Now each model keeps its own newest checkpoint.
"""

from __future__ import annotations

import hashlib

from sleap_rtc_plugin.client.checkpoints import CheckpointStore


def put(store: CheckpointStore, tmp_path, model: str, epoch: int, data: bytes):
    src = tmp_path / "in" / f"{model}-{epoch}.ckpt"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return store.put(src, sha256=hashlib.sha256(data).hexdigest(), model=model, epoch=epoch, attempt=1, move=True)


def test_each_model_keeps_its_newest_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path / "ckpts", "job")
    assert store.per_model() == []
    c1 = put(store, tmp_path, "centroid", 1, b"c1" * 100)
    c2 = put(store, tmp_path, "centroid", 2, b"c2" * 100)  # final epoch of the centroid model
    assert not c1.path.exists()  # a model's older checkpoint goes
    i0 = put(store, tmp_path, "centered_instance", 0, b"i0" * 100)
    assert c2.path.is_file()  # ...but another model's new one does not delete it
    assert [(i.model, i.epoch) for i in store.per_model()] == [("centroid", 2), ("centered_instance", 0)]
    assert store.latest() == i0
    i1 = put(store, tmp_path, "centered_instance", 1, b"i1" * 100)
    assert [i.path for i in store.per_model()] == [c2.path, i1.path] and not i0.path.exists()
    c2.path.write_bytes(b"bit rot")  # a corrupt one is not offered
    assert [i.model for i in store.per_model()] == ["centered_instance"]


def test_a_store_written_before_per_model_pointers_still_offers_its_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path / "ckpts", "job")
    info = put(store, tmp_path, "single_instance", 3, b"s3" * 100)
    for pointer in store.dir.glob("model-*.json"):
        pointer.unlink()
    assert store.per_model() == [info]
