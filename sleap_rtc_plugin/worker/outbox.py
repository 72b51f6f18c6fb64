"""Job results kept on disk until the client confirms it has them.

A trained model is hours of GPU time, so it must survive a dropped connection
and a worker restart: each result lives in ``<data_dir>/outbox/<job_id>/`` with
a ``manifest.json`` (files, sizes, sha256, job metadata) and is removed only by
:meth:`Outbox.ack`. An entry appears atomically (built in a temp dir, renamed
into place), so a crash mid-write leaves no half entry that looks complete.

Model run dirs are packed as one zip per model with sorted names, fixed
timestamps and permissions, so the same run dir always gives the same bytes
and the same sha256 (a resumed transfer can trust it).

Methods block on disk; the async wrappers run them in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..util.hashing import sha256_file
from .private import private_dir, private_tree

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class OutboxError(ValueError):
    """Bad job id or missing source; one actionable line."""


@dataclass(frozen=True)
class OutboxFile:
    name: str
    size: int
    sha256: str
    kind: str = "file"


@dataclass
class OutboxEntry:
    job_id: str
    job_type: str
    created: float
    files: list[OutboxFile]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path = Path()

    def file_path(self, name: str) -> Path:
        if name not in {f.name for f in self.files}:
            raise KeyError(f"job {self.job_id} has no result file {name!r}")
        return self.path / name


def zip_dir_deterministic(src: Path, dest: Path, arc_root: str | None = None) -> Path:
    """Zip ``src`` so equal contents always give equal bytes.

    Entries are sorted, dated 1980-01-01 and marked 0644; symlinks are skipped.
    """
    arc_root = arc_root if arc_root is not None else src.name
    paths = sorted(
        (p for p in src.rglob("*") if p.is_file() and not p.is_symlink()),
        key=lambda p: p.relative_to(src).as_posix(),
    )
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in paths:
            info = zipfile.ZipInfo(f"{arc_root}/{p.relative_to(src).as_posix()}", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            with open(p, "rb") as f, zf.open(info, "w") as out:
                shutil.copyfileobj(f, out, 1 << 20)
    return dest


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise OutboxError(f"invalid job id {job_id!r}: use letters, digits, '.', '_' or '-' (max 128)")
    return job_id


class Outbox:
    """Results on disk under ``<data_dir>/outbox``; survive restarts until acked."""

    def __init__(self, data_dir: str | Path):
        self.root = private_dir(data_dir, "outbox") / "outbox"
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def put(
        self,
        job_id: str,
        *,
        job_type: str,
        run_dirs: Iterable[str | Path] = (),
        files: Iterable[str | Path] = (),
        metadata: dict[str, Any] | None = None,
    ) -> OutboxEntry:
        """Store results for ``job_id``: each run dir as ``<name>.zip``, files copied."""
        check_job_id(job_id)
        final = self.root / job_id
        if final.exists():
            raise OutboxError(f"outbox already holds job {job_id}; ack it before storing again")
        tmp = self.root / f".tmp-{job_id}-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir(mode=0o700)
        try:
            entries: list[OutboxFile] = []
            names: set[str] = set()

            def add(name: str, kind: str) -> None:
                p = tmp / name
                entries.append(OutboxFile(name, p.stat().st_size, sha256_file(p), kind))

            for run_dir in map(Path, run_dirs):
                if not run_dir.is_dir():
                    raise OutboxError(f"run dir {run_dir} does not exist")
                name = f"{run_dir.name}.zip"
                if name in names:
                    raise OutboxError(f"two results are named {name}")
                names.add(name)
                zip_dir_deterministic(run_dir, tmp / name)
                add(name, "model")
            for src in map(Path, files):
                if not src.is_file():
                    raise OutboxError(f"result file {src} does not exist")
                if src.name in names or src.name == MANIFEST:
                    raise OutboxError(f"two results are named {src.name}")
                names.add(src.name)
                shutil.copyfile(src, tmp / src.name)
                add(src.name, "predictions" if src.name.endswith(".slp") else "file")
            entry = OutboxEntry(job_id, job_type, time.time(), entries, dict(metadata or {}), final)
            manifest = {
                "job_id": job_id,
                "job_type": job_type,
                "created": entry.created,
                "files": [asdict(f) for f in entries],
                "metadata": entry.metadata,
            }
            with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            private_tree(tmp)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("outbox: stored job %s (%d files)", job_id, len(entries))
        return entry

    def _load(self, path: Path) -> OutboxEntry | None:
        try:
            with open(path / MANIFEST, "r", encoding="utf-8") as f:
                m = json.load(f)
            return OutboxEntry(
                job_id=m["job_id"],
                job_type=m["job_type"],
                created=float(m["created"]),
                files=[OutboxFile(**f) for f in m["files"]],
                metadata=m.get("metadata") or {},
                path=path,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("outbox: skipping unreadable entry %s (%s)", path.name, exc)
            return None

    def get(self, job_id: str) -> OutboxEntry | None:
        """The stored entry for ``job_id``, or ``None``."""
        check_job_id(job_id)
        path = self.root / job_id
        return self._load(path) if (path / MANIFEST).is_file() else None

    def list(self) -> list[OutboxEntry]:
        """All complete entries, oldest first."""
        entries = [
            e
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (e := self._load(p)) is not None
        ]
        return sorted(entries, key=lambda e: e.created)

    def verify(self, job_id: str) -> bool:
        """True if every file of the entry still matches its recorded sha256."""
        entry = self.get(job_id)
        if entry is None:
            return False
        return all(sha256_file(entry.path / f.name) == f.sha256 for f in entry.files)

    def ack(self, job_id: str) -> bool:
        """Delete the entry once the client has it; ``False`` if there was none."""
        check_job_id(job_id)
        path = self.root / job_id
        if not path.exists():
            return False
        trash = self.root / f".tmp-ack-{job_id}-{time.monotonic_ns()}"
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        logger.info("outbox: job %s acknowledged and removed", job_id)
        return True

    async def aput(self, job_id: str, **kwargs: Any) -> OutboxEntry:
        return await asyncio.to_thread(self.put, job_id, **kwargs)

    async def aget(self, job_id: str) -> OutboxEntry | None:
        return await asyncio.to_thread(self.get, job_id)

    async def aack(self, job_id: str) -> bool:
        return await asyncio.to_thread(self.ack, job_id)
