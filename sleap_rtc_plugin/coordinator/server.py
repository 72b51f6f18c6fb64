"""The coordinator: rooms, registration, discovery, relay and heartbeats over websockets.

One connection handler per socket reads frames in order; every frame is decoded by
the protocol registry and anything wrong with it is answered with a typed ``error``
frame -- the loop itself never dies on bad input. Writes to a socket go through a
small per-connection outbox drained by its own task, so one slow peer can never stall
the handler of the peer relaying to it (a peer whose outbox overflows is dropped).

Heartbeats are protocol ``ping``/``pong`` frames (websockets' own pings are off): the
server sends ``ping`` every ``heartbeat_interval`` and drops a connection that has sent
nothing for ``heartbeat_timeout``. Any frame counts as a sign of life.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .. import __version__
from ..protocol.base import MAX_FRAME_BYTES, ProtocolError
from ..protocol.coordinator import (
    COORDINATOR,
    CreateRoom,
    Discover,
    IceRefresh,
    IceServers,
    Error,
    Ok,
    Ping,
    Pong,
    Register,
    Relay,
    RoomCreated,
    UpdatePeer,
)
from ..protocol.queue import SENT_BY_COORDINATOR, AdminRequest, AdminResult, ClientReport, JobReport, QueueCancel, QueueSubmit, QueueWatch
from .admin import AdminService
from ..config import default
from ..util.clock import SYSTEM_CLOCK, Clock
from .audit_log import AuditWriter
from .discovery import peer_list_frame
from .edge import Edge, address_of
from .heartbeat import HeartbeatSlots
from .jobstore import JobStore
from .limits import EdgeLimits, is_loopback
from .link import CLOSE_DROPPED, OUTBOX_SIZE, Link, ref_of
from .presence import PeerEntry, Presence
from .queue import JobQueue
from .queue_limits import QueueLimits
from .registration import Registrar, apply_policy
from .routing import PeerRequests
from .store import RoomStore
from .turn import TurnConfig

__all__ = ["CLOSE_DROPPED", "OUTBOX_SIZE", "CoordinatorServer", "Link", "peer_list_frame"]

log = logging.getLogger(__name__)

#: Frames above MAX_FRAME_BYTES but below this get a typed ``oversize`` error; larger
#: ones make websockets close the socket (1009) before the frame is even buffered.
WS_MAX_SIZE = 4 * MAX_FRAME_BYTES

_CLIENT_BOUND = {"room_created", "registered", "peer_list", "ok", "error"} | SENT_BY_COORDINATOR


class CoordinatorServer:
    """Signaling server. Use as ``async with CoordinatorServer(port=0) as srv: srv.url``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = default("server.port"),
        db_path: str | Path | None = None,
        *,
        heartbeat_interval: float = 10.0,
        heartbeat_timeout: float = 30.0,
        lease_seconds: float = 60.0,
        reconnect_grace: float = 60.0,
        allow_room_token_workers: bool = False,
        limits: EdgeLimits | None = None,
        queue_limits: QueueLimits | None = None,
        ssl_context: ssl.SSLContext | None = None,
        turn: TurnConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        compression: bool = default("server.compression"),
    ):
        if heartbeat_timeout <= heartbeat_interval:
            raise ValueError("heartbeat_timeout must be longer than heartbeat_interval")
        if lease_seconds <= heartbeat_interval:
            raise ValueError("lease_seconds must be longer than heartbeat_interval (heartbeats renew the lease)")
        self.host = host
        self.port = port
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.store = RoomStore(db_path)
        self.presence = Presence()
        self.jobstore = JobStore(self.store)
        self.queue = JobQueue(
            self.jobstore, self.presence, lease_seconds=lease_seconds, reconnect_grace=reconnect_grace, audit=self.audit,
            allow_room_token_workers=allow_room_token_workers, limits=queue_limits, clock=clock,
        )
        self.admin = AdminService(self)
        self.registrar = Registrar(self)
        self.requests = PeerRequests(self)
        self.edge = Edge(limits, self._audit_now)
        self.ssl_context = ssl_context
        self.compression = compression
        self.turn = turn or TurnConfig()
        self._audit_log = AuditWriter(self.jobstore.audit_many)
        self._queue_task: asyncio.Task[None] | None = None
        self._links: set[Link] = set()
        self._beats: HeartbeatSlots[Link] = HeartbeatSlots()
        self._server: Server | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._room_count = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.ssl_context else 'ws'}://{host}:{self.port}"

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        await self.jobstore.open()
        await self.queue.load()
        self._room_count = await self.store.count_rooms()
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=None,
            compression="deflate" if self.compression else None,
            max_size=WS_MAX_SIZE,
            close_timeout=2,
            ssl=self.ssl_context,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name="coordinator-heartbeat")
        self._queue_task = asyncio.create_task(self._queue_loop(), name="coordinator-queue")
        log.info("coordinator listening on %s (db %s)", self.url, self.store.db_path)
        if self.ssl_context is None and not is_loopback(self.host) and self.host != "localhost":
            log.warning("serving %s WITHOUT TLS: room and admin tokens cross the network in plaintext; "
                        "pass --tls-cert/--tls-key or put a TLS reverse proxy in front (see docs/lab-it.md)", self.url)

    async def stop(self) -> None:
        for task in (self._heartbeat_task, self._queue_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._heartbeat_task = self._queue_task = None
        await self.requests.aclose()
        await self.registrar.aclose()
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
            self._server = None
        self.edge.flush_summaries(everything=True)
        await self.flush_audit()
        await self.queue.flush()
        await self.store.close()
        log.info("coordinator stopped")

    async def __aenter__(self) -> CoordinatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def create_room(self, ttl_hours: float = 720.0) -> tuple[str, str, float]:
        """Create a room in-process; return ``(room_id, token, expires_at)``."""
        result = await self.store.create_room(ttl_hours)
        self._room_count += 1
        return result

    def stats(self) -> dict[str, Any]:
        return {"status": "ok", "rooms": self._room_count, "peers": len(self.presence), "version": __version__}

    # --- HTTP ---------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] != "/health":
            return None
        with contextlib.suppress(Exception):
            self._room_count = await self.store.count_rooms()
        response = connection.respond(HTTPStatus.OK, json.dumps(self.stats()) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    # --- audit -----------------------------------------------------------------------

    def audit(self, kind: str, actor: str, *, room_id: str | None = None, subject: str | None = None, detail: dict[str, Any] | None = None) -> None:
        """Append to the audit log without making the caller wait; writes stay in order
        (one database thread) and :meth:`flush_audit` waits for them. Failed-auth rows
        are coalesced per address and window (:mod:`.limits`)."""
        self.edge.audit(kind, actor, room_id=room_id, subject=subject, detail=detail)

    def _audit_now(self, kind: str, actor: str, *, room_id: str | None = None, subject: str | None = None, detail: dict[str, Any] | None = None) -> None:
        self._audit_log.add(kind, actor, room_id=room_id, subject=subject, detail=detail)

    async def flush_audit(self) -> None:
        await self._audit_log.flush()

    # --- queue ---------------------------------------------------------------------------

    async def _queue_loop(self) -> None:
        """Lease expiry and dispatch retries, at least once per heartbeat interval."""
        interval = min(self.heartbeat_interval, self.queue.lease_seconds / 4, max(self.queue.reconnect_grace / 4, 0.05))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.queue.tick()
            except Exception:  # noqa: BLE001 - one bad job must not stop lease checks
                log.exception("queue tick failed")

    def apply_policy(self, entry: PeerEntry) -> None:
        """Admin policy over what a worker says about itself (see :func:`.registration.apply_policy`)."""
        apply_policy(self.queue, entry)

    def disconnect(self, entry: PeerEntry, reason: str) -> None:
        """Remove a peer from presence and close its socket (e.g. its token was revoked)."""
        link = entry.link
        link.send(Error(code="token_revoked", message=f"{reason}; ask the administrator for a new worker token"))
        self.forget(link, reason)
        link.drop(reason)

    # --- heartbeats -----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """One slot of the links per tick (:mod:`.heartbeat`): every link is visited once
        per interval, and the pongs of thousands of peers never arrive in one burst.

        Ticks are due at fixed times from the start, not one sleep after another: on a busy
        loop every sleep overshoots, and ten overshoots a round would stretch the gap between
        a link's pings past its peer's patience. A late wake-up serves every slot due by
        then (at most one round: after a suspend the links are visited once, not in a burst)."""
        loop = asyncio.get_running_loop()
        slots = self._beats.count
        tick_len = self.heartbeat_interval / slots
        start, served, was_late, grace_until = loop.time(), 0, False, 0.0
        while True:
            await asyncio.sleep(max(0.0, start + (served + 1) * tick_len - loop.time()))
            now = loop.time()
            due = int((now - start) / tick_len)
            if due <= served:
                continue
            # Woken a whole tick late, this process was stalled (a pause, a long GC): what its peers sent
            # meanwhile is still unread and its own pings went out late, so for one interval nobody is judged
            # silent. Only a stall's first late pass starts that grace: a loop that is always late still judges.
            late = now - (start + (served + 1) * tick_len) > tick_len
            if late and not was_late:
                grace_until = now + self.heartbeat_interval
            was_late = late
            judge = now >= grace_until
            served = max(served, due - slots)
            now_mono, now_wall = time.monotonic(), time.time()
            ping: str | None = None
            housekeeping = served // (60 * slots) != due // (60 * slots)
            for tick in range(served, due):
                for link in self._beats.due(tick):
                    if judge and now_mono - link.last_seen > self.heartbeat_timeout:
                        self.forget(link, "heartbeat timeout")
                        link.drop(f"no frame for {self.heartbeat_timeout:g}s (heartbeat timeout)")
                    elif link.entry is not None and link.entry.room_expires_at <= now_wall:
                        link.send(Error(code="room_expired", message=f"room {link.entry.room_id} has expired"))
                        self.forget(link, "room expired")
                        link.drop("room expired")
                    else:
                        ping = ping or Ping(ts=now_wall).encode()  # once per tick, not once per link
                        link.send_text(ping)
            served = due
            if housekeeping:
                try:
                    purged = await self.store.purge_expired()
                    self._room_count = await self.store.count_rooms()
                except Exception:  # noqa: BLE001 - housekeeping must not end heartbeats
                    log.exception("purging expired rooms failed")
                else:
                    if purged:
                        log.info("purged %d expired room(s)", purged)

    # --- connection handling ----------------------------------------------------------

    async def _handle(self, conn: ServerConnection) -> None:
        address = await self.edge.admit(conn)
        if address is None:
            return
        try:
            await self._serve_link(conn, address)
        finally:
            self.edge.release(address)

    async def _serve_link(self, conn: ServerConnection, address: str) -> None:
        link = Link(conn)
        link.writer = asyncio.create_task(link.write_loop())
        self._links.add(link)
        self._beats.add(link)
        strikes = 0
        try:
            async for raw in conn:
                link.last_seen = time.monotonic()
                if link.entry is not None and link.entry.role == "worker":
                    self.queue.renew(link.entry)
                try:
                    await self._on_frame(link, raw)
                except ProtocolError as exc:
                    if self.edge.refused(address, exc):
                        strikes += 1
                        log.debug("rate limited %s: %s", link.who, exc.message)
                    else:
                        log.warning("rejected frame from %s: %s (%s)", link.who, exc.code, exc.message)
                    link.send(Error(code=exc.code, message=exc.message[:500], ref=exc.ref))
                    if strikes >= self.edge.limits.strikes_before_close:
                        link.drop(f"rate_limited: kept sending after {strikes} refusals; {exc.message}")
                except Exception:  # noqa: BLE001 - one bad frame must not end the connection
                    log.exception("internal error handling a frame from %s", link.who)
                    link.send(Error(code="internal", message="coordinator failed to handle this frame; see its log", ref=ref_of(raw)))
        except ConnectionClosed:
            pass
        finally:
            self._links.discard(link)
            self._beats.discard(link)
            self.forget(link, f"disconnected (code {conn.close_code})")
            link.writer.cancel()

    def is_live(self, link: Link) -> bool:
        return link in self._links

    def forget(self, link: Link, why: str) -> None:
        entry = link.entry
        if entry is not None and self.presence.remove(entry):
            log.info("peer left room=%s peer=%s role=%s: %s", entry.room_id, entry.peer_id, entry.role, why)

    async def _on_frame(self, link: Link, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            raise ProtocolError("malformed", "binary frames are not accepted; send JSON text frames")
        try:
            msg = COORDINATOR.decode(raw)
        except ProtocolError as exc:
            exc.ref = exc.ref or ref_of(raw)
            raise
        except RecursionError:
            raise ProtocolError("malformed", "frame is nested too deeply", ref=None) from None

        if isinstance(msg, Ping):
            link.send(Pong(ts=msg.ts))
            return
        if isinstance(msg, Pong):
            return
        if isinstance(msg, Error):
            log.warning("peer %s reported error %s: %s", link.who, msg.code, msg.message[:200])
            return
        ref = getattr(msg, "ref", None)
        if msg.TYPE in _CLIENT_BOUND:
            raise ProtocolError("unexpected_type", f"{msg.TYPE!r} is sent by the coordinator, not to it", ref=ref)
        if isinstance(msg, (CreateRoom, Register, AdminRequest)):
            self.edge.before_credentials(address_of(link.conn), ref)
        if isinstance(msg, CreateRoom):
            await self._on_create_room(link, msg)
            return
        if isinstance(msg, Register):
            await self.registrar.register(link, msg)
            return
        if isinstance(msg, AdminRequest):
            result = await self.admin.handle(link, msg)
            link.send(AdminResult(action=msg.action, result=result, ref=msg.ref))
            return
        if link.entry is None:
            raise ProtocolError("not_registered", f"send 'register' before {msg.TYPE!r}", ref=ref)
        if isinstance(msg, UpdatePeer):
            self.requests.update(link, msg)
        elif isinstance(msg, Discover):
            self.requests.discover(link, msg)
        elif isinstance(msg, IceRefresh):
            servers, expires = self.turn.ice_servers(link.entry.peer_id)
            link.send(IceServers(servers=servers, expires=expires, ref=msg.ref))
        elif isinstance(msg, Relay):
            self.requests.relay(link, msg)
        elif isinstance(msg, (QueueSubmit, QueueWatch, QueueCancel, ClientReport)):
            await self.requests.queue_request(link, msg)
        elif isinstance(msg, JobReport):
            if link.entry.role != "worker":
                raise ProtocolError("not_worker", "only workers report on jobs", ref=msg.ref)
            await self.queue.report(link.entry, msg)
            link.send(Ok(ref=msg.ref))
        else:  # a type registered in COORDINATOR that this server has no handler for
            raise ProtocolError("unexpected_type", f"{msg.TYPE!r} is not handled by this coordinator", ref=ref)

    async def _on_create_room(self, link: Link, msg: CreateRoom) -> None:
        admin = await self.edge.authorize_room(address_of(link.conn), link.who, msg, self.jobstore.check_admin_token)
        room_id, token, expires_at = await self.create_room(msg.ttl_hours)
        if admin is not None:
            self.audit("room_created", f"admin:{admin}", room_id=room_id, detail={"ttl_hours": msg.ttl_hours})
        link.send(RoomCreated(room_id=room_id, token=token, expires_at=expires_at, ref=msg.ref))
