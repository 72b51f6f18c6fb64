"""The client's copy of a queued job's latest training checkpoint, kept crash-safe.

During a queued training job the worker relays ``last.ckpt`` to the client now and
then; if the worker dies, the client hands the newest copy to the next worker, which
resumes from it. A power cut or a kill at any instant must leave a usable checkpoint,
so every write goes: staging file → SHA-256 check → fsync → rename into place → write
``latest.json`` the same way. The previous checkpoint is deleted only after the
pointer no longer names it.

A job with several models (top-down: centroid, then centered instance) has one
checkpoint per model: each also has its own pointer ``model-<model>.json``, and a new
checkpoint replaces only its own model's previous one, so the finished first model's
final checkpoint survives while the second trains (:meth:`CheckpointStore.per_model`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ..util.hashing import sha256_file

log = logging.getLogger(__name__)

POINTER = "latest.json"
MODEL_POINTER = "model-{}.json"


class CheckpointError(Exception):
    """A relayed checkpoint could not be kept (hash mismatch, unreadable file)."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    sha256: str
    size: int
    model: str
    epoch: int | None
    attempt: int
    saved_at: float

    def as_dict(self) -> dict:
        data = asdict(self)
        data["path"] = self.path.name
        return data


def _safe(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in model)[:64] or "model"


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """``<root>/<job_id>/``: ``<model>-<sha16>.ckpt`` files plus the ``latest.json`` pointer.

    Synchronous on purpose (file work); async callers use ``asyncio.to_thread``.
    """

    def __init__(self, root: str | Path, job_id: str):
        self.dir = Path(root) / job_id

    def put(self, src: str | Path, *, sha256: str, model: str, epoch: int | None, attempt: int, move: bool = False) -> CheckpointInfo:
        """Keep ``src`` as the latest checkpoint if its hash is ``sha256``."""
        src = Path(src)
        self.dir.mkdir(parents=True, exist_ok=True)
        staging = self.dir / f".staging-{uuid.uuid4().hex}"
        try:
            if move:
                shutil.move(str(src), staging)
            else:
                shutil.copyfile(src, staging)
            with open(staging, "rb+") as f:
                os.fsync(f.fileno())
            actual = sha256_file(staging)
            if actual != sha256:
                raise CheckpointError(f"checkpoint {src.name} does not match its announced hash (got {actual[:12]}…, expected {sha256[:12]}…)")
            safe_model = _safe(model)
            final = self.dir / f"{safe_model}-{sha256[:16]}.ckpt"
            os.replace(staging, final)
            info = CheckpointInfo(final, sha256, final.stat().st_size, model, epoch, attempt, time.time())
            previous = self._read(self.dir / MODEL_POINTER.format(safe_model), verify=False)
            self._write_pointer(info, MODEL_POINTER.format(safe_model))
            self._write_pointer(info)
            _fsync_dir(self.dir)
        finally:
            staging.unlink(missing_ok=True)
        if previous is not None and previous.path != final:
            previous.path.unlink(missing_ok=True)
        log.info("checkpoint kept: %s epoch %s (%s, %.1f MB)", model, epoch, final.name, info.size / 1e6)
        return info

    def _write_pointer(self, info: CheckpointInfo, name: str = POINTER) -> None:
        tmp = self.dir / f".{name}.{uuid.uuid4().hex}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(info.as_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / name)

    def latest(self, *, verify: bool = True) -> CheckpointInfo | None:
        """The newest complete checkpoint, or ``None``; with ``verify`` its hash is checked."""
        return self._read(self.dir / POINTER, verify=verify)

    def per_model(self) -> list[CheckpointInfo]:
        """The newest verified checkpoint of each model, oldest first (the order they trained)."""
        found = [info for p in self.dir.glob(MODEL_POINTER.format("*")) if (info := self._read(p, verify=True)) is not None]
        if not found and (single := self.latest()) is not None:
            found = [single]  # kept before per-model pointers existed
        return sorted(found, key=lambda i: i.saved_at)

    def _read(self, pointer: Path, *, verify: bool) -> CheckpointInfo | None:
        try:
            data = json.loads(pointer.read_text(encoding="utf-8"))
            info = CheckpointInfo(
                path=self.dir / Path(data["path"]).name, sha256=data["sha256"], size=int(data["size"]), model=data["model"],
                epoch=data.get("epoch"), attempt=int(data.get("attempt", 0)), saved_at=float(data.get("saved_at", 0.0)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not info.path.is_file():
            return None
        if verify and sha256_file(info.path) != info.sha256:
            log.warning("checkpoint %s is corrupt (hash mismatch); ignoring it", info.path)
            return None
        return info

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
