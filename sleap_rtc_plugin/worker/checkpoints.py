"""Find the newest training checkpoint to relay to the client of a queued job.

sleap-nn (with ``trainer_config.model_ckpt.save_last=true``) rewrites ``last.ckpt`` in
its run dir at the end of every epoch, in place. A copy taken while it is being
written would be torn, so a snapshot counts only if the file's size and mtime are the
same before and after the copy; otherwise the next poll tries again.

Each run dir (one per model) is relayed on its own: a top-down job's centroid model
ends, and its final checkpoint still goes out even once the next model has started
writing newer ones, so a later attempt need not retrain it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

log = logging.getLogger(__name__)

#: sleap-nn's per-epoch checkpoint; ``best.ckpt`` is the fallback before the first ``last``.
NAMES = ("last.ckpt", "best.ckpt")


@dataclass(frozen=True)
class CheckpointSnapshot:
    path: Path
    sha256: str
    size: int
    source: Path
    mtime_ns: int


def _newest(output_dir: Path) -> Path | None:
    found = [p for name in NAMES for p in output_dir.glob(f"*/{name}") if p.is_file()]
    return max(found, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), default=None)


def per_run_dir(output_dir: Path) -> list[Path]:
    """Each run dir's checkpoint (``last.ckpt``, else ``best.ckpt``), oldest first."""
    found: dict[Path, Path] = {}
    for name in NAMES:
        for p in output_dir.glob(f"*/{name}"):
            if p.is_file():
                found.setdefault(p.parent, p)
    return sorted(found.values(), key=lambda p: p.stat().st_mtime_ns)


def take_snapshot(output_dir: str | Path, staging_dir: str | Path, *, newer_than_ns: int = 0) -> CheckpointSnapshot | None:
    """Copy the newest checkpoint under ``output_dir/*/`` if it changed since ``newer_than_ns``."""
    source = _newest(Path(output_dir))
    return snapshot_of(source, staging_dir, newer_than_ns=newer_than_ns) if source is not None else None


def snapshot_of(source: Path, staging_dir: str | Path, *, newer_than_ns: int = 0) -> CheckpointSnapshot | None:
    """Copy ``source`` if it changed since ``newer_than_ns`` and was not rewritten meanwhile."""
    before = source.stat()
    if before.st_mtime_ns <= newer_than_ns:
        return None
    staging = Path(staging_dir)
    staging.mkdir(parents=True, exist_ok=True)
    dest = staging / f"{uuid.uuid4().hex}.ckpt"
    shutil.copyfile(source, dest)
    after = source.stat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        dest.unlink(missing_ok=True)
        return None  # rewritten while copying: try on the next poll
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
        os.fsync(f.fileno())
    return CheckpointSnapshot(dest, h.hexdigest(), before.st_size, source, before.st_mtime_ns)


class CheckpointWatcher:
    """Poll ``output_dir`` every ``interval`` seconds and hand each new snapshot to
    ``on_snapshot`` (which sends it and may delete it). Runs until cancelled."""

    def __init__(self, output_dir: str | Path, staging_dir: str | Path, interval: float, on_snapshot: Callable[[CheckpointSnapshot], Awaitable[None]]):
        self.output_dir = Path(output_dir)
        self.staging_dir = Path(staging_dir)
        self.interval = interval
        self.on_snapshot = on_snapshot
        self._seen: dict[Path, int] = {}

    async def poll_once(self) -> CheckpointSnapshot | None:
        """Relay every run dir whose checkpoint changed (oldest first); return the last sent."""
        sent = None
        for source in await asyncio.to_thread(per_run_dir, self.output_dir):
            snap = await asyncio.to_thread(snapshot_of, source, self.staging_dir, newer_than_ns=self._seen.get(source.parent, 0))
            if snap is None:
                continue
            self._seen[source.parent] = snap.mtime_ns
            try:
                await self.on_snapshot(snap)
            finally:
                snap.path.unlink(missing_ok=True)
            sent = snap
        return sent

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed relay must not stop training
                log.warning("checkpoint relay failed (will retry next interval): %s", exc)
