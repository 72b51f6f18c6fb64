"""A worker's identity across restarts: its peer id, and the room it made with its secret.

A lab pastes a worker's session string once (into SLEAP, a script, a wiki page). If the
worker came back after every restart as a new peer in a new room with a new token and
secret, that string would go stale each time. So the worker keeps what the string
names in its data dir, owner-only (0700 folder, 0600 files): ``identity.json`` (peer
id, coordinator, room id and room token, embedded coordinator port) and
``room-secret``. The coordinator itself keeps only a hash of the room token (its
room store), so the plain token lives only here and in the session string.

Two workers on one data dir would share that identity (and its jobs and outbox); the
second one is refused with a clear message by :class:`DataDirLock`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

from ..errors import UserError
from .private import FILE_MODE, private_dir

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"
SECRET_FILE = "room-secret"
LOCK_FILE = "worker.lock"
#: ``Identity.server_url`` of a room on the worker's own embedded coordinator (whose URL follows its port).
EMBEDDED = "embedded"


@dataclass
class Identity:
    peer_id: str | None = None
    #: The coordinator the room and peer id belong to: its URL, or :data:`EMBEDDED`.
    server_url: str | None = None
    room_id: str | None = None
    #: The room token, kept only for a room this worker created (else it came from config).
    token: str | None = None
    embedded_port: int | None = None
    secret: str | None = None

    def same_place(self, server_url: str | None, room_id: str | None = None) -> bool:
        """This identity belongs to coordinator ``server_url`` (and room ``room_id``, if given)."""
        return self.server_url == server_url and (room_id is None or self.room_id == room_id)


def _write_private(path: Path, text: str) -> None:
    """Atomic replace with a 0600 file, whatever the umask."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)


def load(data_dir: Path) -> Identity:
    """The saved identity (empty when none, or unreadable: a worker then starts afresh)."""
    data_dir = Path(data_dir)
    try:
        raw: Any = json.loads((data_dir / IDENTITY_FILE).read_text())
    except FileNotFoundError:
        return Identity()
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s (%s): this worker starts with a new identity", data_dir / IDENTITY_FILE, exc)
        return Identity()
    if not isinstance(raw, dict):
        return Identity()
    known = {f.name: f.type for f in fields(Identity)}
    kept: dict[str, Any] = {k: v for k, v in raw.items() if k in known and k != "secret" and isinstance(v, (str, int, type(None)))}
    ident = Identity(**kept)
    try:
        ident.secret = (data_dir / SECRET_FILE).read_text().strip() or None
    except OSError:
        ident.secret = None
    return ident


def save(data_dir: Path, ident: Identity) -> None:
    """Write ``ident`` (blocking: call through ``asyncio.to_thread`` on the event loop)."""
    data_dir = private_dir(data_dir)
    public = {k: v for k, v in asdict(ident).items() if k != "secret"}
    _write_private(data_dir / IDENTITY_FILE, json.dumps(public, indent=1) + "\n")
    if ident.secret:
        _write_private(data_dir / SECRET_FILE, ident.secret + "\n")
    else:
        (data_dir / SECRET_FILE).unlink(missing_ok=True)


class DataDirLock:
    """An exclusive lock on a data dir, held while the worker runs (the OS drops it if the
    process dies, so a killed worker never blocks its own restart)."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_FILE
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        fh = os.fdopen(fd, "r+")
        try:
            _lock(fh)
        except OSError:
            holder = fh.read().strip() or "?"
            fh.close()
            raise UserError(
                f"data dir {self.path.parent} is in use by another worker (pid {holder}); give each worker its own --data-dir "
                "(it holds that worker's identity, jobs and outbox)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the lock
            self._fh = None


def _lock(fh: IO[str]) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]  # Windows-only module
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


__all__ = ["DataDirLock", "EMBEDDED", "Identity", "load", "save"]
