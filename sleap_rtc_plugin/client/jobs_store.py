"""A project's remote jobs: their owner credentials and the list of jobs submitted from it.

Holding the room secret lets anyone use a worker; only the client that submitted a
job may follow it, stop or cancel it, or acknowledge (and so delete) its results.
At submit the client makes a fresh credential and keeps it here, in
``<project>/.sleap-rtc/owners/<job_id>`` (folder 0700, file 0600), so a later
``--attach JOB_ID`` from the same project folder finds it. The worker and the
coordinator keep only its sha256. Once the worker has released the results the file
goes too: the credential opens nothing any more.

The job list (:class:`JobList`, ``<project>/.sleap-rtc/joblist/<job_id>.json``, one
small file per job so a CLI and a GUI on the same project never rewrite each other's
entries) keeps what the Remote Jobs panel shows and what "Run again" needs: kind,
models, worker, state, times, the package and options it ran with, whether its results
were fetched and where they went. The connection is kept without its token or secret.

Synchronous on purpose (small file work); async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..protocol.base import ProtocolError
from ..protocol.names import check_file_name, check_id, check_owner, child_path, is_id
from ..util.private_files import write_private

OWNERS_DIR = Path(".sleap-rtc") / "owners"
JOBLIST_DIR = Path(".sleap-rtc") / "joblist"
#: Packages kept for "Run again" and for a queued job followed again after a restart.
PACKAGES_DIR = Path(".sleap-rtc") / "packages"
LOG_TAIL_LINES = 50

log = logging.getLogger(__name__)


def new_owner_secret() -> str:
    return secrets.token_urlsafe(32)


class OwnerStore:
    """``<project>/.sleap-rtc/owners/``: one owner-only file per job id."""

    def __init__(self, project_dir: str | Path):
        self.dir = Path(project_dir) / OWNERS_DIR

    def _path(self, job_id: str) -> Path:
        return child_path(self.dir, check_id(job_id, "job id"))

    def create(self, job_id: str) -> str:
        """A new credential for ``job_id``, on disk (0600) before anything is submitted."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.name == "posix":
            os.chmod(self.dir, 0o700)
        secret = new_owner_secret()
        path = self._path(job_id)
        write_private(path, secret.encode("ascii"), durable=True)
        return secret

    def get(self, job_id: str) -> str | None:
        """The credential ``job_id`` was submitted with from this project, if any."""
        try:
            text = self._path(job_id).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        try:
            return check_owner(text) or None
        except ProtocolError:  # a damaged file is as good as none
            return None

    def forget(self, job_id: str) -> None:
        self._path(job_id).unlink(missing_ok=True)


@dataclass
class JobRecord:
    """One job as this project remembers it (the panel's row, and what runs it again)."""

    job_id: str
    kind: str
    state: str = "starting"
    models: list[str] = field(default_factory=list)
    worker_id: str = ""
    worker_name: str = ""
    submitted: float = field(default_factory=time.time)
    finished: float | None = None
    message: str = ""
    error_code: str = ""
    position: int | None = None
    epoch: int | None = None
    epochs: int | None = None
    eta_s: float | None = None
    fetched: bool = False
    files: list[str] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    package: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    local_files: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    queue: dict[str, Any] | None = None
    connection: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobRecord":
        """Our own file, but a file on disk: unknown keys are dropped, the id is checked."""
        known = {f.name for f in fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in known})
        check_id(record.job_id, "job id")
        if record.kind not in ("train", "track"):
            raise ProtocolError("bad_job_record", f"job {record.job_id}: unknown kind {record.kind!r}")
        return record

    def add_log(self, line: str) -> None:
        self.log_tail = [*self.log_tail, line][-LOG_TAIL_LINES:]


class JobList:
    """``<project>/.sleap-rtc/joblist/``: the project's remote jobs, newest first."""

    def __init__(self, project_dir: str | Path):
        self.project_dir = Path(project_dir)
        self.dir = self.project_dir / JOBLIST_DIR

    def _path(self, job_id: str) -> Path:
        return child_path(self.dir, check_id(job_id, "job id") + ".json")

    def put(self, record: JobRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self._path(record.job_id), json.dumps(asdict(record), indent=1, default=str).encode())

    def get(self, job_id: str) -> JobRecord | None:
        """The entry for ``job_id`` (a bad id raises ``ProtocolError``); a damaged entry is none."""
        path = self._path(job_id)
        try:
            record = JobRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, ProtocolError) as exc:
            log.warning("job list entry %s unreadable (%s); ignored", job_id, exc)
            return None
        return record if record.job_id == job_id else None

    def update(self, job_id: str, **changes: Any) -> JobRecord | None:
        """Change some fields of a known job; an unknown job is left unknown."""
        record = self.get(job_id)
        if record is None:
            return None
        for key, value in changes.items():
            setattr(record, key, value)
        self.put(record)
        return record

    def all(self) -> list[JobRecord]:
        try:
            names = sorted(p.name for p in self.dir.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
        except FileNotFoundError:
            return []
        records = [r for r in (self.get(n.removesuffix(".json")) for n in names if is_id(n.removesuffix(".json"))) if r is not None]
        return sorted(records, key=lambda r: r.submitted, reverse=True)

    def keep_package(self, job_id: str, package: Path) -> Path:
        """A copy of ``package`` that outlives a temporary folder (a hard link where possible)."""
        folder = child_path(self.project_dir / PACKAGES_DIR, check_id(job_id, "job id"))
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        kept = folder / check_file_name(package.name)
        if kept.exists():
            return kept
        try:
            os.link(package, kept)
        except OSError:
            shutil.copy2(package, kept)
        return kept

    def remove(self, job_id: str) -> None:
        """Forget a job: its entry and its kept package (never its installed results)."""
        self._path(job_id).unlink(missing_ok=True)
        shutil.rmtree(child_path(self.project_dir / PACKAGES_DIR, check_id(job_id, "job id")), ignore_errors=True)
