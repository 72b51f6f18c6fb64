"""Registration: a socket becomes a peer in a room, by room token or worker token.

Also the admin policy laid over what a worker says about itself, since it applies
from the moment a worker registers (and again on every update and admin change).
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from ..protocol.base import ProtocolError
from ..protocol.coordinator import WORKER_TOKEN_PREFIX, Error, Register, Registered
from ..util.tasks import TaskSet
from .host import CoordinatorHost
from .link import Link
from .peer_entry import PeerEntry
from .queue import JobQueue
from .store import Room, RoomAccessError

log = logging.getLogger(__name__)

#: Largest metadata dict a peer may publish (JSON-encoded).
MAX_METADATA_BYTES = 32 * 1024


def labels_of(metadata: dict[str, Any]) -> dict[str, Any]:
    labels = metadata.get("labels")
    return dict(labels) if isinstance(labels, dict) else {}


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def apply_policy(queue: JobQueue, entry: PeerEntry) -> None:
    """Admin policy over what a worker says about itself: admin labels win over its
    own, and a drained worker shows ``draining`` instead of ``available``."""
    if entry.role != "worker":
        return
    record = queue.record(entry.room_id, entry.peer_id)
    metadata = entry.metadata
    if record is not None and record.labels:
        metadata = {**entry.metadata, "labels": {**entry.reported_labels, **record.labels}}
    elif entry.metadata.get("labels", {}) != entry.reported_labels and "labels" in entry.metadata:
        metadata = {**entry.metadata, "labels": dict(entry.reported_labels)}
    status = entry.status
    drained = record is not None and record.drained
    if drained and status == "available":
        status = "draining"
    elif not drained and status == "draining" and entry.reported_status != "draining":
        status = entry.reported_status
    if status != entry.status:
        log.info("peer status room=%s peer=%s %s -> %s (admin policy)", entry.room_id, entry.peer_id, entry.status, status)
    entry.update(status=status, metadata=metadata)


class Registrar:
    """Handles ``register`` frames for one coordinator."""

    def __init__(self, host: CoordinatorHost) -> None:
        self.host = host
        self._closers = TaskSet(log, "registration")

    async def aclose(self) -> None:
        await self._closers.aclose()

    async def register(self, link: Link, msg: Register) -> None:
        host = self.host
        if link.entry is not None:
            raise ProtocolError("already_registered", f"this connection is already {link.entry.peer_id}; open a new one", ref=msg.ref)
        if json_size(msg.metadata) > MAX_METADATA_BYTES:
            raise ProtocolError("oversize", f"metadata exceeds {MAX_METADATA_BYTES} bytes", ref=msg.ref)
        via_token = msg.token.startswith(WORKER_TOKEN_PREFIX)
        try:
            if via_token:
                room, peer_id = await self._check_worker_token(msg)
            else:
                room = await host.store.check_token(msg.room_id, msg.token)
                peer_id = msg.peer_id or f"{msg.role[0]}-{secrets.token_hex(6)}"
                # Read from the database, not memory: an enrolled id stays bound across restarts, for any role.
                record = await host.jobstore.get_worker(room.room_id, peer_id) if msg.peer_id else None
                if record is not None and record.has_token:
                    raise RoomAccessError("token_required", f"worker id {peer_id!r} is bound to a worker token; register with that token")
        except RoomAccessError as exc:
            log.warning("registration refused from %s room=%s: %s", link.who, msg.room_id[:64], exc.code)
            host.audit("register_failed", link.who, room_id=msg.room_id[:128], subject=(msg.peer_id or "")[:128],
                       detail={"code": exc.code, "role": msg.role, "via_token": via_token})
            raise ProtocolError(exc.code, exc.message, ref=msg.ref) from None
        if link.dropped or not host.is_live(link):
            return
        if link.entry is not None:  # a concurrent register on this socket won the race
            raise ProtocolError("already_registered", "this connection is already registered", ref=msg.ref)
        existing = host.presence.get(room.room_id, peer_id)
        if existing is not None and via_token:
            self._replace(existing, link)
        elif existing is not None:
            raise ProtocolError(
                "peer_id_in_use",
                f"peer id {peer_id!r} is connected in this room; pick another or wait for the old connection to time out",
                ref=msg.ref,
            )
        entry = PeerEntry(
            peer_id=peer_id,
            room_id=room.room_id,
            role=msg.role,
            status=msg.status,
            metadata=msg.metadata,
            link=link,
            room_expires_at=room.expires_at,
            via_token=via_token,
            reported_status=msg.status,
            reported_labels=labels_of(msg.metadata),
        )
        host.apply_policy(entry)
        host.presence.add(entry)
        link.entry = entry
        log.info("peer registered room=%s peer=%s role=%s status=%s", room.room_id, peer_id, msg.role, entry.status)
        host.audit("register", link.who, room_id=room.room_id, subject=peer_id, detail={"role": msg.role, "via_token": via_token, "status": entry.status})
        ice_servers, ice_expires = host.turn.ice_servers(peer_id)
        link.send(Registered(peer_id=peer_id, room_id=room.room_id, heartbeat_interval=host.heartbeat_interval, ref=msg.ref,
                             ice_servers=ice_servers if host.turn.enabled else None, ice_expires=ice_expires))
        if msg.role == "worker":
            await host.queue.worker_registered(entry)
        else:
            await host.queue.dispatch(room.room_id)

    def _replace(self, old: PeerEntry, new_link: Link) -> None:
        """The holder of a worker token takes its id over from a live socket at once (a
        restarted worker whose old socket has not timed out yet, or a squatter). The old
        socket is told why and closed; it can no longer speak for the id."""
        log.warning("worker %s/%s re-registered with its worker token from %s; dropping the old connection %s",
                    old.room_id, old.peer_id, new_link.who, old.link.who)
        self.host.audit("register_takeover", new_link.who, room_id=old.room_id, subject=old.peer_id, detail={"old_via_token": old.via_token})
        old_link: Link = old.link
        old_link.send(Error(code="replaced", message=f"worker id {old.peer_id} registered again with its worker token from another connection; this one is closed"))
        self.host.forget(old_link, "replaced by a registration with the worker token")
        old_link.entry = None
        self._closers.spawn(old_link.drop_when_flushed("replaced by a registration with the worker token"), name="drop-replaced")

    async def _check_worker_token(self, msg: Register) -> tuple[Room, str]:
        """Room and worker id bound to a worker token; the token is the credential."""
        record = await self.host.jobstore.worker_by_token(msg.token)
        if record is None or record.room_id != msg.room_id or msg.role != "worker":
            raise RoomAccessError("bad_token", "worker token not recognised for this room (revoked or rotated?); ask the administrator for the current one")
        if msg.peer_id and msg.peer_id != record.worker_id:
            raise RoomAccessError("bad_token", f"this worker token belongs to worker {record.worker_id!r}; register as that worker")
        room = await self.host.store.get_room(msg.room_id)
        self.host.queue.set_record(record)
        return room, record.worker_id
