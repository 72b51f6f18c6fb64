"""Durable queue state: jobs, worker identities, admin tokens and the audit log (SQLite).

It shares the room store's connection and its single database thread, so every write
is ordered with the others and the event loop never blocks on disk. The queue keeps
its working copy of the jobs in memory and writes each change through here; on start
it reads them back, which is what lets jobs and their positions survive a restart.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..protocol.coordinator import WORKER_TOKEN_PREFIX
from ..protocol.job_state import JobState
from .store import RoomStore, hash_token

#: Prefix that tells a worker token from a room token at registration.
ADMIN_TOKEN_PREFIX = "sat_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id           TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    spec             TEXT NOT NULL,
    requirements     TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    max_retries      INTEGER NOT NULL,
    retry_job_errors INTEGER NOT NULL,
    state            TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    retries          INTEGER NOT NULL DEFAULT 0,
    worker_id        TEXT,
    lease_expires_at REAL,
    failure          TEXT,
    message          TEXT NOT NULL DEFAULT '',
    excluded         TEXT NOT NULL DEFAULT '[]',
    checkpoint       TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    owner_hash       TEXT,
    banned           TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE TABLE IF NOT EXISTS workers (
    room_id    TEXT NOT NULL,
    worker_id  TEXT NOT NULL,
    token_hash TEXT UNIQUE,
    labels     TEXT NOT NULL DEFAULT '{}',
    drained    INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    rotated_at REAL,
    PRIMARY KEY (room_id, worker_id)
);
CREATE TABLE IF NOT EXISTS room_policy (
    room_id                  TEXT PRIMARY KEY,
    allow_room_token_workers INTEGER NOT NULL,
    updated_at               REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_tokens (
    token_hash TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      REAL NOT NULL,
    kind    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    room_id TEXT,
    subject TEXT,
    detail  TEXT NOT NULL DEFAULT '{}'
);
"""

#: Columns added after the first release: added to an older database when it is opened.
_ADDED_JOB_COLUMNS = {"owner_hash": "TEXT", "banned": "TEXT NOT NULL DEFAULT '[]'"}

#: Queue states are those of the shared vocabulary (protocol/job_state.py), as the strings stored here.
ACTIVE_STATES = (JobState.DISPATCHED.value, JobState.RUNNING.value)
#: A training job whose worker finished; its results wait in that worker's outbox until
#: the client confirms it holds them (then ``succeeded``).
RESULTS_READY = JobState.RESULTS_READY.value
QUEUED, DISPATCHED, RUNNING = JobState.QUEUED.value, JobState.DISPATCHED.value, JobState.RUNNING.value
SUCCEEDED, FAILED, CANCELLED = JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELLED.value
FINAL_STATES = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELLED.value)


@dataclass
class QueuedJob:
    """One job as the queue sees it (a row of ``jobs``)."""

    job_id: str
    room_id: str
    client_id: str
    spec: dict[str, Any]
    requirements: dict[str, Any]
    priority: int = 0
    max_retries: int = 3
    retry_job_errors: bool = False
    state: str = JobState.QUEUED.value
    attempt: int = 0
    retries: int = 0
    worker_id: str | None = None
    lease_expires_at: float | None = None
    failure: str | None = None
    message: str = ""
    excluded: list[str] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    #: SHA-256 of the owner's secret (``None``: a client that sent none; anyone in its room may follow it).
    owner_hash: str | None = None
    #: Workers that failed the client's room-secret proof: never dispatched this job again.
    banned: list[str] = field(default_factory=list)
    seq: int = 0
    #: Which worker held each attempt (memory only): a client's late ``auth_failed`` still names its worker.
    attempt_workers: dict[int, str] = field(default_factory=dict, compare=False)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def public(self) -> dict[str, Any]:
        """What ``admin jobs`` shows: everything but the owner hash (only whether there is one)."""
        row = asdict(self)
        row["has_owner"] = row.pop("owner_hash") is not None
        return row


@dataclass
class WorkerRecord:
    room_id: str
    worker_id: str
    has_token: bool
    labels: dict[str, str]
    drained: bool
    created_at: float
    rotated_at: float | None


_JOB_COLUMNS = (
    "job_id", "room_id", "client_id", "spec", "requirements", "priority", "max_retries", "retry_job_errors", "state",
    "attempt", "retries", "worker_id", "lease_expires_at", "failure", "message", "excluded", "checkpoint", "created_at", "updated_at",
    "owner_hash", "banned",
)


def _job_row(job: QueuedJob) -> tuple[Any, ...]:
    return (
        job.job_id, job.room_id, job.client_id, json.dumps(job.spec), json.dumps(job.requirements), job.priority, job.max_retries,
        int(job.retry_job_errors), job.state, job.attempt, job.retries, job.worker_id, job.lease_expires_at, job.failure,
        job.message, json.dumps(job.excluded), json.dumps(job.checkpoint) if job.checkpoint is not None else None,
        job.created_at, job.updated_at, job.owner_hash, json.dumps(job.banned),
    )


def _job_from(row: sqlite3.Row) -> QueuedJob:
    return QueuedJob(
        job_id=row["job_id"], room_id=row["room_id"], client_id=row["client_id"], spec=json.loads(row["spec"]),
        requirements=json.loads(row["requirements"]), priority=row["priority"], max_retries=row["max_retries"],
        retry_job_errors=bool(row["retry_job_errors"]), state=row["state"], attempt=row["attempt"], retries=row["retries"],
        worker_id=row["worker_id"], lease_expires_at=row["lease_expires_at"], failure=row["failure"], message=row["message"],
        excluded=json.loads(row["excluded"]), checkpoint=json.loads(row["checkpoint"]) if row["checkpoint"] else None,
        created_at=row["created_at"], updated_at=row["updated_at"], seq=row["seq"],
        owner_hash=row["owner_hash"], banned=json.loads(row["banned"] or "[]"),
    )


def _worker_from(row: sqlite3.Row) -> WorkerRecord:
    return WorkerRecord(
        room_id=row["room_id"], worker_id=row["worker_id"], has_token=row["token_hash"] is not None,
        labels=json.loads(row["labels"]), drained=bool(row["drained"]), created_at=row["created_at"], rotated_at=row["rotated_at"],
    )


def _where(**filters: str | None) -> tuple[str, list[str]]:
    """`` WHERE a = ? AND b = ?`` for the filters that are set (column names are ours, never input)."""
    used = {column: value for column, value in filters.items() if value}
    clause = " WHERE " + " AND ".join(f"{column} = ?" for column in used) if used else ""
    return clause, list(used.values())

class JobStore:
    """Async SQL for the queue, on the room store's database thread."""

    def __init__(self, rooms: RoomStore):
        self._rooms = rooms

    @property
    def _db(self) -> sqlite3.Connection:
        db = self._rooms._db
        assert db is not None, "store is not open"
        return db

    async def open(self) -> None:
        await self._rooms._run(self._open)

    def _open(self) -> None:
        have = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)").fetchall()}
        if have:
            for column, decl in _ADDED_JOB_COLUMNS.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {decl}")
        self._db.executescript(_SCHEMA)

    # --- room policy ----------------------------------------------------------------

    async def room_policies(self) -> dict[str, bool]:
        """Rooms whose admin set ``allow_room_token_workers`` (others use the server default)."""
        rows = await self._rooms._run(lambda: self._db.execute("SELECT room_id, allow_room_token_workers FROM room_policy").fetchall())
        return {room_id: bool(allow) for room_id, allow in rows}

    async def set_room_policy(self, room_id: str, allow_room_token_workers: bool | None) -> None:
        """Store the room's choice; ``None`` forgets it (back to the server default)."""
        if allow_room_token_workers is None:
            await self._rooms._run(lambda: self._db.execute("DELETE FROM room_policy WHERE room_id = ?", (room_id,)))
            return
        await self._rooms._run(
            lambda: self._db.execute(
                "INSERT OR REPLACE INTO room_policy (room_id, allow_room_token_workers, updated_at) VALUES (?, ?, ?)",
                (room_id, int(allow_room_token_workers), time.time()),
            )
        )

    # --- jobs ---------------------------------------------------------------------

    async def load_jobs(self) -> list[QueuedJob]:
        """Every job not yet final, in queue order."""
        return await self._rooms._run(self._load_jobs)

    def _load_jobs(self) -> list[QueuedJob]:
        cur = self._db.execute(
            "SELECT * FROM jobs WHERE state NOT IN (?, ?, ?) ORDER BY seq", FINAL_STATES
        )
        cur.row_factory = sqlite3.Row
        return [_job_from(r) for r in cur.fetchall()]

    async def insert_job(self, job: QueuedJob) -> int:
        return await self._rooms._run(self._insert_job, job)

    def _insert_job(self, job: QueuedJob) -> int:
        cols = ", ".join(_JOB_COLUMNS)
        marks = ", ".join("?" for _ in _JOB_COLUMNS)
        return int(self._db.execute(f"INSERT INTO jobs ({cols}) VALUES ({marks})", _job_row(job)).lastrowid or 0)

    async def save_job(self, job: QueuedJob) -> None:
        job.updated_at = time.time()
        await self._rooms._run(self._save_job, job)

    def _save_job(self, job: QueuedJob) -> None:
        sets = ", ".join(f"{c} = ?" for c in _JOB_COLUMNS[1:])
        self._db.execute(f"UPDATE jobs SET {sets} WHERE job_id = ?", (*_job_row(job)[1:], job.job_id))

    async def get_job(self, job_id: str) -> QueuedJob | None:
        return await self._rooms._run(self._get_job, job_id)

    def _get_job(self, job_id: str) -> QueuedJob | None:
        cur = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        cur.row_factory = sqlite3.Row
        row = cur.fetchone()
        return _job_from(row) if row else None

    async def list_jobs(self, *, room_id: str | None = None, state: str | None = None, limit: int = 200) -> list[QueuedJob]:
        return await self._rooms._run(self._list_jobs, room_id, state, limit)

    def _list_jobs(self, room_id: str | None, state: str | None, limit: int) -> list[QueuedJob]:
        where, args = _where(room_id=room_id, state=state)
        cur = self._db.execute(f"SELECT * FROM jobs{where} ORDER BY seq DESC LIMIT ?", (*args, limit))
        cur.row_factory = sqlite3.Row
        return [_job_from(r) for r in cur.fetchall()]

    # --- workers ------------------------------------------------------------------

    async def get_worker(self, room_id: str, worker_id: str) -> WorkerRecord | None:
        return await self._rooms._run(self._get_worker, room_id, worker_id)

    def _get_worker(self, room_id: str, worker_id: str) -> WorkerRecord | None:
        cur = self._db.execute("SELECT * FROM workers WHERE room_id = ? AND worker_id = ?", (room_id, worker_id))
        cur.row_factory = sqlite3.Row
        row = cur.fetchone()
        return _worker_from(row) if row else None

    async def find_workers(self, worker_id: str | None = None, room_id: str | None = None) -> list[WorkerRecord]:
        return await self._rooms._run(self._find_workers, worker_id, room_id)

    def _find_workers(self, worker_id: str | None, room_id: str | None) -> list[WorkerRecord]:
        where, args = _where(worker_id=worker_id, room_id=room_id)
        cur = self._db.execute(f"SELECT * FROM workers{where} ORDER BY room_id, worker_id", args)
        cur.row_factory = sqlite3.Row
        return [_worker_from(r) for r in cur.fetchall()]

    async def worker_by_token(self, token: str) -> WorkerRecord | None:
        """The worker this token belongs to, or ``None``; compared in constant time."""
        return await self._rooms._run(self._worker_by_token, hash_token(token))

    def _worker_by_token(self, candidate: str) -> WorkerRecord | None:
        cur = self._db.execute("SELECT * FROM workers WHERE token_hash = ?", (candidate,))
        cur.row_factory = sqlite3.Row
        row = cur.fetchone()
        if row is None or not hmac.compare_digest(str(row["token_hash"]), candidate):
            return None
        return _worker_from(row)

    async def set_worker_token(self, room_id: str, worker_id: str, *, labels: dict[str, str] | None = None) -> str:
        """Create or replace the worker's token; return it (the only time it is seen)."""
        token = WORKER_TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self._rooms._run(self._set_worker_token, room_id, worker_id, hash_token(token), labels, time.time())
        return token

    def _set_worker_token(self, room_id: str, worker_id: str, token_hash: str, labels: dict[str, str] | None, now: float) -> None:
        self._ensure_worker(room_id, worker_id, now)
        self._db.execute("UPDATE workers SET token_hash = ?, rotated_at = ? WHERE room_id = ? AND worker_id = ?", (token_hash, now, room_id, worker_id))
        if labels is not None:
            self._db.execute("UPDATE workers SET labels = ? WHERE room_id = ? AND worker_id = ?", (json.dumps(labels), room_id, worker_id))

    def _ensure_worker(self, room_id: str, worker_id: str, now: float) -> None:
        self._db.execute("INSERT OR IGNORE INTO workers (room_id, worker_id, created_at) VALUES (?, ?, ?)", (room_id, worker_id, now))

    async def revoke_worker_token(self, room_id: str, worker_id: str) -> bool:
        return await self._rooms._run(self._revoke, room_id, worker_id)

    def _revoke(self, room_id: str, worker_id: str) -> bool:
        cur = self._db.execute(
            "UPDATE workers SET token_hash = NULL, rotated_at = ? WHERE room_id = ? AND worker_id = ? AND token_hash IS NOT NULL",
            (time.time(), room_id, worker_id),
        )
        return cur.rowcount > 0

    async def set_worker_fields(self, room_id: str, worker_id: str, *, labels: dict[str, str] | None = None, drained: bool | None = None) -> WorkerRecord:
        return await self._rooms._run(self._set_fields, room_id, worker_id, labels, drained)

    def _set_fields(self, room_id: str, worker_id: str, labels: dict[str, str] | None, drained: bool | None) -> WorkerRecord:
        self._ensure_worker(room_id, worker_id, time.time())
        if labels is not None:
            self._db.execute("UPDATE workers SET labels = ? WHERE room_id = ? AND worker_id = ?", (json.dumps(labels), room_id, worker_id))
        if drained is not None:
            self._db.execute("UPDATE workers SET drained = ? WHERE room_id = ? AND worker_id = ?", (int(drained), room_id, worker_id))
        record = self._get_worker(room_id, worker_id)
        assert record is not None
        return record

    # --- admin tokens -------------------------------------------------------------

    async def create_admin_token(self, name: str = "admin") -> str:
        token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self._rooms._run(
            lambda: self._db.execute("INSERT INTO admin_tokens (token_hash, name, created_at) VALUES (?, ?, ?)", (hash_token(token), name, time.time()))
        )
        return token

    async def check_admin_token(self, token: str) -> str | None:
        """The admin token's name if valid, else ``None``; every stored hash is compared
        in constant time so timing says nothing about which one nearly matched."""
        rows = await self._rooms._run(lambda: self._db.execute("SELECT token_hash, name FROM admin_tokens").fetchall())
        candidate = hash_token(token)
        found = None
        for stored, name in rows:
            if hmac.compare_digest(stored, candidate):
                found = name
        return found

    # --- audit --------------------------------------------------------------------

    async def audit(self, kind: str, actor: str, *, room_id: str | None = None, subject: str | None = None, detail: dict[str, Any] | None = None) -> None:
        await self._rooms._run(self._audit, time.time(), kind, actor, room_id, subject, json.dumps(detail or {}, default=str))

    async def audit_many(self, rows: list[tuple[float, str, str, str | None, str | None, str]]) -> None:
        """Append rows ``(ts, kind, actor, room_id, subject, detail_json)`` in one transaction."""
        await self._rooms._run(self._audit_many, rows)

    def _audit_many(self, rows: list[tuple[float, str, str, str | None, str | None, str]]) -> None:
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT INTO audit (ts, kind, actor, room_id, subject, detail) VALUES (?, ?, ?, ?, ?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _audit(self, ts: float, kind: str, actor: str, room_id: str | None, subject: str | None, detail: str) -> None:
        self._db.execute(
            "INSERT INTO audit (ts, kind, actor, room_id, subject, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (ts, kind, actor, room_id, subject, detail),
        )

    async def read_audit(self, *, limit: int = 100, kind: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        return await self._rooms._run(self._read_audit, limit, kind, since)

    def _read_audit(self, limit: int, kind: str | None, since: float | None) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[Any] = []
        if kind:
            where.append("kind LIKE ?")
            args.append(kind.replace("*", "%"))
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        sql = "SELECT id, ts, kind, actor, room_id, subject, detail FROM audit" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY id DESC LIMIT ?"
        rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [
            {"id": r[0], "ts": r[1], "kind": r[2], "actor": r[3], "room_id": r[4], "subject": r[5], "detail": json.loads(r[6])}
            for r in reversed(rows)
        ]
