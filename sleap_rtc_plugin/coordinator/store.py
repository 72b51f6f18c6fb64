"""Durable room store: rooms and their token hashes in SQLite.

Only what must survive a restart lives here (rooms, token hashes, expiry); live
presence is in memory (:mod:`.presence`). Every SQLite call runs on one dedicated
thread so the event loop never blocks on disk, and so a ``:memory:`` database (one
connection, one thread) works for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest room lifetime accepted (ten years); a bound keeps ``expires_at`` sane.
MAX_TTL_HOURS = 24.0 * 365 * 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    room_id    TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
"""


class RoomAccessError(Exception):
    """Registration refused; ``code`` is the protocol error code to send back."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Room:
    room_id: str
    expires_at: float


def hash_token(token: str) -> str:
    """SHA-256 hex digest; tokens are 256-bit random, so no salt/KDF is needed."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def default_db_path() -> Path:
    """``<user data dir>/sleap-rtc/coordinator.sqlite3`` (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("sleap-rtc", appauthor=False)) / "coordinator.sqlite3"


def _create_private(db: Path) -> None:
    """Create the database file owner-only (0600), and its folder 0700 if we make it,
    whatever the umask: it holds token hashes and the audit log. SQLite gives its
    ``-wal``/``-shm`` files the database file's mode. An existing file is tightened too."""
    missing = []
    parent = db.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        os.chmod(folder, 0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(db, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        os.chmod(db, 0o600)
    except PermissionError:
        log.warning("cannot make %s owner-only (not its owner); fix with: chmod 600 %s", db, db)


class RoomStore:
    """Async facade over a SQLite file (or ``:memory:``) holding rooms."""

    def __init__(self, db_path: str | Path | None = None):
        self.db_path = str(db_path) if db_path is not None else str(default_db_path())
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        #: room_id -> (token_hash, expires_at) of rooms found in the database. Rows are never
        #: updated, only inserted and purged once expired (which the expiry check already
        #: refuses), so a registration burst reads each room once instead of once a peer.
        #: Only rooms that exist are kept: probing unknown ids cannot grow it.
        self._known: dict[str, tuple[str, float]] = {}

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sleap-rtc-store")
        await self._run(self._open_sync)
        log.info("room store opened at %s", self.db_path)

    def _open_sync(self) -> None:
        if self.db_path != ":memory:":
            _create_private(Path(self.db_path))
        db = sqlite3.connect(self.db_path, isolation_level=None)
        if self.db_path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        if self.db_path != ":memory:":
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError, PermissionError):
                    os.chmod(self.db_path + suffix, 0o600)
        self._db = db

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("room store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- operations -----------------------------------------------------------

    async def create_room(self, ttl_hours: float = 720.0) -> tuple[str, str, float]:
        """Create a room; return ``(room_id, token, expires_at)``. The token is not kept."""
        if not (0 < ttl_hours <= MAX_TTL_HOURS):
            raise ValueError(f"ttl_hours must be in (0, {MAX_TTL_HOURS:g}], got {ttl_hours!r}")
        room_id = secrets.token_hex(6)
        token = secrets.token_urlsafe(32)
        now = time.time()
        expires_at = now + ttl_hours * 3600.0
        await self._run(self._insert, room_id, hash_token(token), now, expires_at)
        log.info("room created room=%s expires_at=%.0f", room_id, expires_at)
        return room_id, token, expires_at

    def _insert(self, room_id: str, token_hash: str, now: float, expires_at: float) -> None:
        assert self._db is not None
        self._db.execute(
            "INSERT INTO rooms (room_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (room_id, token_hash, now, expires_at),
        )

    async def check_token(self, room_id: str, token: str) -> Room:
        """Return the room if ``token`` opens it; raise :class:`RoomAccessError` otherwise.

        An unknown room and a wrong token give the same ``bad_token`` code so room ids
        cannot be probed; the hash comparison is constant-time.
        """
        row = await self._room_row(room_id)
        candidate = hash_token(token)
        stored = row[0] if row else hash_token(secrets.token_urlsafe(32))
        if not hmac.compare_digest(candidate, stored) or row is None:
            raise RoomAccessError("bad_token", "room id or token not recognised; check both or create a new room")
        expires_at = float(row[1])
        if expires_at <= time.time():
            raise RoomAccessError("room_expired", f"room {room_id} has expired; create a new room")
        return Room(room_id, expires_at)

    async def get_room(self, room_id: str) -> Room:
        """The room if it exists and has not expired (for worker-token registration,
        where the worker token, not the room token, is the credential)."""
        row = await self._room_row(room_id)
        if row is None:
            raise RoomAccessError("bad_token", "room id or token not recognised; check both or create a new room")
        if float(row[1]) <= time.time():
            raise RoomAccessError("room_expired", f"room {room_id} has expired; create a new room")
        return Room(room_id, float(row[1]))

    async def _room_row(self, room_id: str) -> tuple[str, float] | None:
        row = self._known.get(room_id)
        if row is None:
            row = await self._run(self._select, room_id)
            if row is not None:
                self._known[room_id] = row = (row[0], float(row[1]))
        return row

    def _select(self, room_id: str) -> tuple[str, float] | None:
        assert self._db is not None
        return self._db.execute("SELECT token_hash, expires_at FROM rooms WHERE room_id = ?", (room_id,)).fetchone()

    async def count_rooms(self) -> int:
        """Rooms that have not expired."""
        return await self._run(self._count, time.time())

    def _count(self, now: float) -> int:
        assert self._db is not None
        return int(self._db.execute("SELECT COUNT(*) FROM rooms WHERE expires_at > ?", (now,)).fetchone()[0])

    async def purge_expired(self) -> int:
        """Delete expired rooms; return how many went."""
        return await self._run(self._purge, time.time())

    def _purge(self, now: float) -> int:
        self._known = {k: v for k, v in self._known.items() if v[1] > now}
        assert self._db is not None
        return self._db.execute("DELETE FROM rooms WHERE expires_at <= ?", (now,)).rowcount
