"""Checkpoint relay building blocks on a real filesystem: the worker's torn-copy-safe
snapshot and the client's atomic store (staging, hash, rename, latest pointer)."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from sleap_rtc_plugin.client.checkpoints import CheckpointError, CheckpointStore
from sleap_rtc_plugin.worker.checkpoints import CheckpointWatcher, take_snapshot


def _write(path, data: bytes, mtime_ns: int | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return hashlib.sha256(data).hexdigest()


def test_store_keeps_latest_and_survives_a_bad_transfer(tmp_path):
    store = CheckpointStore(tmp_path / "ckpts", "job1")
    assert store.latest() is None
    sha1 = _write(tmp_path / "in" / "a.ckpt", b"epoch-1" * 1000)
    first = store.put(tmp_path / "in" / "a.ckpt", sha256=sha1, model="single_instance", epoch=1, attempt=1)
    assert store.latest() == first and first.path.read_bytes() == b"epoch-1" * 1000

    sha2 = _write(tmp_path / "in" / "b.ckpt", b"epoch-2" * 1000)
    with pytest.raises(CheckpointError, match="announced hash"):
        store.put(tmp_path / "in" / "b.ckpt", sha256=sha1, model="single_instance", epoch=2, attempt=1)
    assert store.latest() == first  # the bad copy changed nothing
    assert not [p for p in store.dir.iterdir() if p.name.startswith(".staging")]

    second = store.put(tmp_path / "in" / "b.ckpt", sha256=sha2, model="single_instance", epoch=2, attempt=1, move=True)
    assert store.latest() == second and not first.path.exists() and not (tmp_path / "in" / "b.ckpt").exists()
    # A crash between staging and rename leaves a stray staging file: ignored.
    (store.dir / ".staging-deadbeef").write_bytes(b"torn")
    assert store.latest() == second
    # A corrupted checkpoint is not offered for resume.
    second.path.write_bytes(b"bit rot")
    assert store.latest() is None
    assert store.latest(verify=False) is not None


def test_snapshot_takes_the_newest_checkpoint_once(tmp_path):
    out, staging = tmp_path / "models", tmp_path / "staging"
    assert take_snapshot(out, staging) is None
    now = time.time_ns()
    _write(out / "run-a" / "best.ckpt", b"best", now - 10**9)
    sha_last = _write(out / "run-a" / "last.ckpt", b"last-epoch-3", now)
    snap = take_snapshot(out, staging)
    assert snap is not None and snap.source.name == "last.ckpt" and snap.sha256 == sha_last
    assert snap.path.read_bytes() == b"last-epoch-3"
    assert take_snapshot(out, staging, newer_than_ns=snap.mtime_ns) is None  # unchanged: nothing new
    sha4 = _write(out / "run-a" / "last.ckpt", b"last-epoch-4", now + 10**9)
    assert take_snapshot(out, staging, newer_than_ns=snap.mtime_ns).sha256 == sha4


async def test_watcher_relays_each_new_checkpoint_and_cleans_up(tmp_path):
    out, staging = tmp_path / "models", tmp_path / "staging"
    got = []

    async def relay(snap):
        got.append((snap.sha256, snap.path.read_bytes()))

    watcher = CheckpointWatcher(out, staging, interval=0.01, on_snapshot=relay)
    assert await watcher.poll_once() is None
    _write(out / "r" / "last.ckpt", b"e1", time.time_ns())
    assert await watcher.poll_once() is not None
    assert await watcher.poll_once() is None
    _write(out / "r" / "last.ckpt", b"e2", time.time_ns() + 10**9)
    await watcher.poll_once()
    assert [data for _, data in got] == [b"e1", b"e2"]
    assert list(staging.iterdir()) == []
