"""Requests from a registered peer: status updates, discovery, relays and the queue.

The coordinator reads a relay payload in one case only (an offer to a draining worker,
:meth:`PeerRequests._check_draining`); everything else is forwarded as sent, with the
``source`` set from the sender's registration.
"""

from __future__ import annotations

import logging
from typing import Any

from ..protocol.base import MAX_FRAME_BYTES, ProtocolError
from ..protocol.coordinator import MAX_SDP, Discover, Ok, Relay, UpdatePeer
from ..protocol.offer import decode_offer
from ..protocol.queue import ClientReport, Queued, QueueCancel, QueueSubmit, QueueWatch
from ..util.tasks import TaskSet
from .discovery import Query
from .host import CoordinatorHost
from .link import Link
from .peer_entry import PeerEntry
from .registration import MAX_METADATA_BYTES, json_size, labels_of

log = logging.getLogger(__name__)

#: Largest relay payload (JSON-encoded); SDP offers are a few KiB.
MAX_PAYLOAD_BYTES = MAX_SDP
#: Peers returned by one discover when the caller sets no limit.
DEFAULT_DISCOVER_LIMIT = 200


class PeerRequests:
    """Handlers for the frames a registered peer sends besides ``register`` and admin."""

    def __init__(self, host: CoordinatorHost) -> None:
        self.host = host
        self._tasks = TaskSet(log, "peer requests")

    async def aclose(self) -> None:
        await self._tasks.aclose()

    async def queue_request(self, link: Link, msg: QueueSubmit | QueueWatch | QueueCancel | ClientReport) -> None:
        entry = link.entry
        assert entry is not None
        if entry.role != "client":
            raise ProtocolError("not_client", f"only clients send {msg.TYPE}", ref=msg.ref)
        if isinstance(msg, QueueSubmit):
            if json_size(msg.spec) > MAX_METADATA_BYTES:
                raise ProtocolError("oversize", f"job spec exceeds {MAX_METADATA_BYTES} bytes", ref=msg.ref)
            job = await self.host.queue.submit(entry, msg)
            link.send(Queued(job_id=job.job_id, position=self.host.queue.position(job) or 0, ref=msg.ref))
            await self.host.queue.dispatch(entry.room_id)
        elif isinstance(msg, QueueWatch):
            await self.host.queue.watch(entry, msg.job_id, msg.ref, owner=msg.owner)
        elif isinstance(msg, ClientReport):
            await self.host.queue.client_report(entry, msg)
            link.send(Ok(ref=msg.ref))
        else:
            await self.host.queue.cancel(entry, msg.job_id, actor=entry.peer_id, ref=msg.ref, owner=msg.owner)
            link.send(Ok(ref=msg.ref))

    def update(self, link: Link, msg: UpdatePeer) -> None:
        entry = link.entry
        assert entry is not None
        if msg.metadata is not None and json_size(msg.metadata) > MAX_METADATA_BYTES:
            raise ProtocolError("oversize", f"metadata exceeds {MAX_METADATA_BYTES} bytes", ref=msg.ref)
        if msg.status is not None and msg.status != entry.status:
            log.info("peer status room=%s peer=%s %s -> %s", entry.room_id, entry.peer_id, entry.status, msg.status)
        entry.update(status=msg.status, metadata=msg.metadata)
        if msg.status is not None:
            entry.reported_status = msg.status
        if msg.metadata is not None:
            entry.reported_labels = labels_of(msg.metadata)
        self.host.apply_policy(entry)
        link.send(Ok(ref=msg.ref))
        if entry.role == "worker" and entry.status == "available":
            self._tasks.spawn(self._dispatch_quietly(entry.room_id), name="dispatch")

    async def _dispatch_quietly(self, room_id: str) -> None:
        try:
            await self.host.queue.dispatch(room_id)
        except Exception:  # noqa: BLE001 - the next queue tick retries
            log.exception("dispatch in room %s failed", room_id)

    def discover(self, link: Link, msg: Discover) -> None:
        entry = link.entry
        assert entry is not None
        if msg.limit is not None and msg.limit < 1:
            raise ProtocolError("bad_value", "limit must be at least 1", ref=msg.ref)
        if msg.min_gpu_memory_mb is not None and msg.min_gpu_memory_mb < 0:
            raise ProtocolError("bad_value", "min_gpu_memory_mb must not be negative", ref=msg.ref)
        room = self.host.presence.room(entry.room_id)
        assert room is not None  # the asker itself is in it
        query = Query.of(role=msg.role, status=msg.status, min_gpu_memory_mb=msg.min_gpu_memory_mb, labels=msg.labels)
        limit = msg.limit or DEFAULT_DISCOVER_LIMIT
        link.send_text(room.peer_list(query, exclude=entry.peer_id, ref=msg.ref, limit=limit, budget=MAX_FRAME_BYTES - 1024))

    def relay(self, link: Link, msg: Relay) -> None:
        sender = link.entry
        assert sender is not None
        if json_size(msg.payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError("oversize", f"relay payload exceeds {MAX_PAYLOAD_BYTES} bytes", ref=msg.ref)
        target = self.host.presence.get(sender.room_id, msg.target)
        if target is None:
            raise ProtocolError("unknown_peer", f"no peer {msg.target[:64]!r} is connected in this room; discover again", ref=msg.ref)
        if msg.kind == "offer" and target.role == "worker" and self.host.queue.drained(target.room_id, target.peer_id):
            self._check_draining(target, sender, msg.payload, msg.ref)
        target.link.send(Relay(target=target.peer_id, kind=msg.kind, payload=msg.payload, source=sender.peer_id))
        log.debug("relayed %s room=%s %s -> %s", msg.kind, sender.room_id, sender.peer_id, target.peer_id)
        link.send(Ok(ref=msg.ref))

    def _check_draining(self, target: PeerEntry, sender: PeerEntry, payload: dict[str, Any], ref: str | None) -> None:
        """A draining worker still takes attaches and the offer for the queued job it holds.

        The only place the coordinator reads a relay payload; it decodes it as the worker will.
        """
        try:
            offer = decode_offer(payload)
        except ProtocolError as exc:
            raise ProtocolError(exc.code, f"offer payload refused: {exc.message}", ref=ref) from None
        held = self.host.queue.holding(target.room_id, target.peer_id)
        job = self.host.queue.jobs.get(held) if held else None
        own_job = job is not None and job.client_id == sender.peer_id and offer.job_id == job.job_id
        if offer.intent != "attach" and not own_job:
            raise ProtocolError("worker_draining", f"worker {target.peer_id} is draining and takes no new jobs; pick another worker or use --queue", ref=ref)
