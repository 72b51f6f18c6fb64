"""Administration over the coordinator socket: workers, jobs, drain, labels, tokens, audit.

Every request carries an admin token (created by ``sleap-rtc admin init``, stored as
SHA-256, compared in constant time). Each action, and each refused token, is written
to the audit log. Changes to a worker (drain, labels, token) are persisted and also
applied to its live registration at once.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from ..protocol.base import ProtocolError
from ..protocol.queue import AdminRequest
from .host import CoordinatorHost
from .jobstore import JobStore, WorkerRecord
from .link import Link
from .queue import JobQueue

log = logging.getLogger(__name__)

MAX_LIST = 1000


def _str_arg(args: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not (0 < len(value) <= 128):
        raise ProtocolError("bad_value", f"admin argument {name!r} must be a string of 1..128 characters")
    return value


def _labels_arg(args: dict[str, Any]) -> dict[str, str] | None:
    labels = args.get("labels")
    if labels is None:
        return None
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()) or len(labels) > 64:
        raise ProtocolError("bad_value", "labels must be an object of at most 64 string=string pairs")
    return dict(labels)


class AdminService:
    def __init__(self, server: CoordinatorHost):
        self.server = server

    @property
    def queue(self) -> JobQueue:
        return self.server.queue

    @property
    def store(self) -> JobStore:
        return self.server.jobstore

    async def handle(self, link: Link, msg: AdminRequest) -> Any:
        name = await self.store.check_admin_token(msg.token)
        if name is None:
            log.warning("admin request refused from %s: bad admin token (action %s)", link.who, msg.action)
            self.server.audit("admin_auth_failed", link.who, subject=msg.action)
            raise ProtocolError("bad_admin_token", "admin token not recognised; create one with `sleap-rtc admin init --db COORDINATOR_DB`", ref=msg.ref)
        actor = f"admin:{name}"
        try:
            handler = getattr(self, f"_{msg.action}")
            result = await handler(msg.args, actor)
        except ProtocolError as exc:
            exc.ref = msg.ref
            raise
        if msg.action not in ("workers", "jobs", "audit"):
            self.server.audit(f"admin_{msg.action}", actor, detail={k: v for k, v in msg.args.items() if k != "token"})
        return result

    # --- helpers ---------------------------------------------------------------------

    async def _resolve(self, args: dict[str, Any]) -> tuple[str, str]:
        """``(room_id, worker_id)``; the room may be omitted when the id is unique."""
        worker_id = _str_arg(args, "worker_id")
        room_id = _str_arg(args, "room_id", required=False)
        assert worker_id is not None
        if room_id:
            return room_id, worker_id
        rooms = {r.room_id for r in await self.store.find_workers(worker_id)}
        rooms |= {e.room_id for e in self.server.presence.entries() if e.peer_id == worker_id and e.role == "worker"}
        if not rooms:
            raise ProtocolError("unknown_worker", f"no worker {worker_id!r} is known; check `sleap-rtc admin workers`")
        if len(rooms) > 1:
            raise ProtocolError("ambiguous_worker", f"worker id {worker_id!r} exists in rooms {sorted(rooms)}; pass --room-id")
        return rooms.pop(), worker_id

    def _apply_live(self, record: WorkerRecord) -> None:
        self.queue.set_record(record)
        entry = self.server.presence.get(record.room_id, record.worker_id)
        if entry is not None:
            self.server.apply_policy(entry)

    # --- actions -------------------------------------------------------------------------

    async def _workers(self, args: dict[str, Any], actor: str) -> list[dict[str, Any]]:
        room_id = _str_arg(args, "room_id", required=False)
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for rec in await self.store.find_workers(room_id=room_id):
            rows[(rec.room_id, rec.worker_id)] = {
                "room_id": rec.room_id, "worker_id": rec.worker_id, "connected": False, "status": "offline",
                "labels": rec.labels, "admin_labels": rec.labels, "drained": rec.drained, "has_token": rec.has_token,
            }
        for e in self.server.presence.entries():
            if e.role != "worker" or (room_id and e.room_id != room_id):
                continue
            row = rows.setdefault((e.room_id, e.peer_id), {"room_id": e.room_id, "worker_id": e.peer_id, "admin_labels": {}, "drained": False, "has_token": False})
            row.update(connected=True, status=e.status, labels=e.metadata.get("labels", {}), via_token=e.via_token)
        for (room, wid), row in rows.items():
            row["job"] = self.queue.holding(room, wid)
        return sorted(rows.values(), key=lambda r: (r["room_id"], r["worker_id"]))[:MAX_LIST]

    async def _jobs(self, args: dict[str, Any], actor: str) -> list[dict[str, Any]]:
        room_id = _str_arg(args, "room_id", required=False)
        state = _str_arg(args, "state", required=False)
        limit = args.get("limit", 200)
        if not isinstance(limit, int) or not (1 <= limit <= MAX_LIST):
            raise ProtocolError("bad_value", f"limit must be 1..{MAX_LIST}")
        out = []
        for job in await self.store.list_jobs(room_id=room_id, state=state, limit=limit):
            live = self.queue.jobs.get(job.job_id, job)
            row = live.public()
            row["position"] = self.queue.position(live) if live is self.queue.jobs.get(job.job_id) else None
            row["progress"] = self.queue.snapshot_progress(job.job_id)
            out.append(row)
        return out

    async def _drain(self, args: dict[str, Any], actor: str) -> dict[str, Any]:
        room_id, worker_id = await self._resolve(args)
        record = await self.store.set_worker_fields(room_id, worker_id, drained=True)
        self._apply_live(record)
        log.info("worker drained room=%s worker=%s by %s", room_id, worker_id, actor)
        return {"room_id": room_id, "worker_id": worker_id, "drained": True, "job": self.queue.holding(room_id, worker_id)}

    async def _undrain(self, args: dict[str, Any], actor: str) -> dict[str, Any]:
        room_id, worker_id = await self._resolve(args)
        record = await self.store.set_worker_fields(room_id, worker_id, drained=False)
        self._apply_live(record)
        log.info("worker undrained room=%s worker=%s by %s", room_id, worker_id, actor)
        await self.queue.dispatch(room_id)
        return {"room_id": room_id, "worker_id": worker_id, "drained": False}

    async def _labels(self, args: dict[str, Any], actor: str) -> dict[str, Any]:
        room_id, worker_id = await self._resolve(args)
        labels = _labels_arg(args)
        if labels is None:
            raise ProtocolError("bad_value", "labels is required (an object of string=string pairs; {} clears them)")
        record = await self.store.set_worker_fields(room_id, worker_id, labels=labels)
        self._apply_live(record)
        await self.queue.dispatch(room_id)
        return asdict(record)

    async def _token_create(self, args: dict[str, Any], actor: str) -> dict[str, Any]:
        room_id = _str_arg(args, "room_id")
        worker_id = _str_arg(args, "worker_id")
        assert room_id and worker_id
        try:
            await self.server.store.get_room(room_id)
        except Exception:
            raise ProtocolError("unknown_room", f"room {room_id!r} does not exist or has expired") from None
        existing = await self.store.get_worker(room_id, worker_id)
        if existing is not None and existing.has_token:
            raise ProtocolError("token_exists", f"worker {worker_id!r} already has a token; use `sleap-rtc admin token rotate`")
        token = await self.store.set_worker_token(room_id, worker_id, labels=_labels_arg(args))
        record = await self.store.get_worker(room_id, worker_id)
        assert record is not None
        self._apply_live(record)
        log.info("worker token created room=%s worker=%s by %s", room_id, worker_id, actor)
        return {"room_id": room_id, "worker_id": worker_id, "token": token}

    async def _token_rotate(self, args: dict[str, Any], actor: str) -> dict[str, Any]:
        room_id, worker_id = await self._resolve(args)
        existing = await self.store.get_worker(room_id, worker_id)
        if existing is None or not existing.has_token:
            raise ProtocolError("no_token", f"worker {worker_id!r} has no token to rotate; use `sleap-rtc admin token create`")
        token = await self.store.set_worker_token(room_id, worker_id)
        log.info("worker token rotated room=%s worker=%s by %s", room_id, worker_id, actor)
        return {"room_id": room_id, "worker_id": worker_id, "token": token}

    async def _token_revoke(self, args: dict[str, Any], actor: str) -> dict[str, Any]:
        room_id, worker_id = await self._resolve(args)
        if not await self.store.revoke_worker_token(room_id, worker_id):
            raise ProtocolError("no_token", f"worker {worker_id!r} has no token to revoke")
        record = await self.store.get_worker(room_id, worker_id)
        assert record is not None
        self.queue.set_record(record)
        entry = self.server.presence.get(room_id, worker_id)
        dropped = False
        if entry is not None and entry.via_token:
            self.server.disconnect(entry, "worker token revoked")
            dropped = True
        log.info("worker token revoked room=%s worker=%s by %s (connection dropped: %s)", room_id, worker_id, actor, dropped)
        return {"room_id": room_id, "worker_id": worker_id, "revoked": True, "disconnected": dropped}

    async def _audit(self, args: dict[str, Any], actor: str) -> list[dict[str, Any]]:
        limit = args.get("limit", 100)
        if not isinstance(limit, int) or not (1 <= limit <= MAX_LIST):
            raise ProtocolError("bad_value", f"limit must be 1..{MAX_LIST}")
        kind = _str_arg(args, "kind", required=False)
        since = args.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, (int, float))):
            raise ProtocolError("bad_value", "since must be a unix time in seconds")
        await self.server.flush_audit()
        return await self.store.read_audit(limit=limit, kind=kind, since=since)

    async def _room_policy(self, args: dict[str, Any], actor: str) -> dict[str, Any]:
        """Show or set whether room-token workers may take queued jobs in a room:
        ``allow_room_token_workers`` true/false sets it, null returns to the server
        default, absent only shows it."""
        room_id = _str_arg(args, "room_id")
        assert room_id
        try:
            await self.server.store.get_room(room_id)
        except Exception:
            raise ProtocolError("unknown_room", f"room {room_id!r} does not exist or has expired") from None
        if "allow_room_token_workers" in args:
            allow = args["allow_room_token_workers"]
            if allow is not None and not isinstance(allow, bool):
                raise ProtocolError("bad_value", "allow_room_token_workers must be true, false or null (server default)")
            await self.store.set_room_policy(room_id, allow)
            if allow is None:
                self.queue.room_policy.pop(room_id, None)
            else:
                self.queue.room_policy[room_id] = allow
            log.info("room policy room=%s allow_room_token_workers=%s by %s", room_id, allow, actor)
            await self.queue.dispatch(room_id)
        return {
            "room_id": room_id,
            "allow_room_token_workers": self.queue.allows_room_token_workers(room_id),
            "source": "room" if room_id in self.queue.room_policy else "server default",
        }

    async def _cancel(self, args: dict[str, Any], actor: str) -> dict[str, Any]:
        job_id = _str_arg(args, "job_id")
        assert job_id
        job = await self.queue.cancel(None, job_id, actor=actor)
        return {"job_id": job.job_id, "state": job.state}
