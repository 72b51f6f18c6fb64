"""Issue 19 item 2 (worker side): every model's checkpoint is relayed, not only the newest.

The watcher used to send only the newest checkpoint under the job's models dir: once a
top-down job's second model wrote its first ``last.ckpt``, the first model's final one
could never go out (a poll that came after both saw only the second)."""

from __future__ import annotations

import os
import time

from sleap_rtc_plugin.worker.checkpoints import CheckpointWatcher


def _write(path, data: bytes, mtime_ns: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


async def test_each_run_dir_is_relayed_even_when_another_is_newer(tmp_path):
    out, staging = tmp_path / "models", tmp_path / "staging"
    got: list[tuple[str, bytes]] = []

    async def relay(snap):
        got.append((snap.source.parent.name, snap.path.read_bytes()))

    watcher = CheckpointWatcher(out, staging, interval=0.01, on_snapshot=relay)
    now = time.time_ns()
    _write(out / "x.centroid.n=20" / "last.ckpt", b"centroid-final", now)
    _write(out / "x.centered_instance.n=20" / "last.ckpt", b"ci-0", now + 10**9)  # newer, written before the poll
    await watcher.poll_once()
    assert got == [("x.centroid.n=20", b"centroid-final"), ("x.centered_instance.n=20", b"ci-0")]  # oldest first
    _write(out / "x.centered_instance.n=20" / "last.ckpt", b"ci-1", now + 2 * 10**9)
    await watcher.poll_once()
    assert got[2:] == [("x.centered_instance.n=20", b"ci-1")]  # only what changed
    assert await watcher.poll_once() is None and list(staging.iterdir()) == []
