"""The client's job owner credentials, kept per project beside its checkpoints.

Holding the room secret lets anyone use a worker; only the client that submitted a
job may follow it, stop or cancel it, or acknowledge (and so delete) its results.
At submit the client makes a fresh credential and keeps it here, in
``<project>/.sleap-rtc/owners/<job_id>`` (folder 0700, file 0600), so a later
``--attach JOB_ID`` from the same project folder finds it. The worker and the
coordinator keep only its sha256. Once the worker has released the results the file
goes too: the credential opens nothing any more.

Synchronous on purpose (small file work); async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..protocol.base import ProtocolError
from ..protocol.names import check_id, check_owner, child_path

OWNERS_DIR = Path(".sleap-rtc") / "owners"


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
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secret.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
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
