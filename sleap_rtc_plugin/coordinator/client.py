"""Async client for the coordinator, used by workers, the CLI client and the GUI.

A :class:`CoordinatorClient` keeps one registered websocket open. Requests carry a
``ref`` and are matched to their reply; relays addressed to this peer are queued for
:meth:`CoordinatorClient.next_relay` and pushed to any handlers. When the socket drops
it reconnects with capped exponential backoff and jitter and re-registers with the
same ``peer_id`` and its latest status and metadata. Authentication failures
(``bad_token``, ``room_expired``) are final: retrying cannot fix them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import random
import time
from typing import Any, Callable, Literal

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ..protocol.base import Message, ProtocolError
from ..protocol.coordinator import (
    COORDINATOR,
    Discover,
    Error,
    Ok,
    PeerInfo,
    PeerList,
    Ping,
    Pong,
    Register,
    IceRefresh,
    IceServers,
    Registered,
    Relay,
    UpdatePeer,
)
from ..protocol.queue import (ClientReport, JobDispatch, JobReport, Queued, QueueCancel, QueueSubmit,
                              QueueUpdate, QueueWatch, Requirements)

from .mailbox import Mailbox, PushHandler, Pushed, RelayHandler
from .oneshot import CoordinatorError, RelayRejected, admin_request, await_reply, closed_error, create_room, open_socket

__all__ = ["CoordinatorClient", "CoordinatorError", "RelayRejected", "admin_request", "create_room"]

log = logging.getLogger(__name__)

#: Error codes after which reconnecting is pointless.
FATAL_CODES = frozenset({"bad_token", "room_expired"})
#: Unsolicited errors after which the coordinator closes this socket and reconnecting
#: would be wrong: another process registered this worker id with its worker token.
FATAL_PUSHED_CODES = frozenset({"replaced"})



async def _first_set(*events: asyncio.Event) -> None:
    """Return as soon as any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class CoordinatorClient:
    """One peer's registered connection to the coordinator."""

    def __init__(
        self,
        url: str,
        *,
        room_id: str,
        token: str,
        role: Literal["worker", "client"],
        peer_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        status: str = "available",
        reconnect: bool = True,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        request_timeout: float = 10.0,
    ):
        self.url = url
        self.room_id = room_id
        self._token = token
        self.role = role
        self.peer_id: str | None = peer_id
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.status = status
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self.heartbeat_interval = 10.0
        self.coordinator_ice: tuple[list[dict[str, Any]] | None, int | None] = (None, None)
        self.reconnects = 0

        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._refs = itertools.count(1)
        self._mail = Mailbox()
        self._connected = asyncio.Event()
        self._finished = asyncio.Event()
        self._failure: CoordinatorError | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"CoordinatorClient({self.url!r}, room={self.room_id!r}, peer={self.peer_id!r}, connected={self.connected})"

    # --- lifecycle ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect and register once; raise :class:`CoordinatorError` if that fails."""
        if self._runner is not None:
            raise RuntimeError("CoordinatorClient.start() called twice")
        ws = await self._open()
        self._runner = asyncio.create_task(self._run(ws), name=f"coordinator-client-{self.peer_id}")

    async def close(self) -> None:
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._set_disconnected("closed", "the client was closed")
        self._finished.set()

    async def __aenter__(self) -> CoordinatorClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until registered (again); raise if the client gave up or was closed."""
        async with asyncio.timeout(timeout):
            while not self._connected.is_set():
                if self._finished.is_set():
                    raise self._failure or CoordinatorError("closed", "the client was closed")
                await _first_set(self._connected, self._finished)

    # --- requests -------------------------------------------------------------------

    async def discover(
        self,
        *,
        role: str | None = "worker",
        status: str | None = None,
        min_gpu_memory_mb: int | None = None,
        labels: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> list[PeerInfo]:
        """Peers of this room (other than this one) matching every given filter,
        available first, then by most free GPU memory."""
        reply = await self._request(
            Discover(role=role, status=status, min_gpu_memory_mb=min_gpu_memory_mb, labels=dict(labels or {}), limit=limit)  # type: ignore[arg-type]
        )
        assert isinstance(reply, PeerList)
        return reply.peers

    async def ice_servers(self, configured: list[Any] | None = None) -> list[Any]:
        """The ICE servers for a new connection: the coordinator's list (TURN credentials
        refreshed first when they expire within a minute), else ``configured``."""
        servers, expires = self.coordinator_ice
        if servers is None:
            return list(configured or [])
        if expires is not None and expires - 60 < time.time():
            reply = await self._request(IceRefresh())
            assert isinstance(reply, IceServers)
            servers, expires = reply.servers, reply.expires
            self.coordinator_ice = (servers, expires)
        return list(servers) + [s for s in (configured or []) if s not in servers]

    async def update(self, *, status: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        """Replace this peer's status and/or metadata.

        The new values are kept locally first, so a reconnect re-registers with them
        even if the connection drops before the coordinator confirms.
        """
        before = (self.status, self.metadata)
        if status is not None:
            self.status = status
        if metadata is not None:
            self.metadata = dict(metadata)
        if not self.connected:
            return
        try:
            await self._request(UpdatePeer(status=status, metadata=metadata))  # type: ignore[arg-type]
        except CoordinatorError as exc:
            if exc.code in ("disconnected", "timeout"):
                return
            self.status, self.metadata = before
            raise

    async def relay(self, target: str, kind: str, payload: dict[str, Any]) -> None:
        """Send ``payload`` to peer ``target`` of this room; raise if it is not there."""
        await self._request(Relay(target=target, kind=kind, payload=payload))  # type: ignore[arg-type]

    async def next_relay(self, kind: str | None = None, source: str | None = None, timeout: float | None = None) -> Relay:
        """Return (and remove) the oldest queued relay matching ``kind``/``source``.

        When waiting for a specific ``source`` and a ``reject`` from that source
        arrives instead, raise :class:`RelayRejected` with the payload's ``code``.
        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while True:
                found = self._mail.take_relay(kind, source)
                if found is not None:
                    return found
                await self._wait_for_delivery()

    async def _wait_for_delivery(self) -> None:
        """Sleep until a relay or push arrives; raise once the client has finished."""
        if self._finished.is_set():
            raise self._failure or CoordinatorError("closed", "the client was closed")
        await _first_set(self._mail.changed, self._finished)

    def add_relay_handler(self, callback: RelayHandler) -> None:
        """Call ``callback(relay)`` (sync or async) for every relay delivered to this peer.

        Relays are still queued for :meth:`next_relay` too.
        """
        self._mail.relay_handlers.append(callback)

    def remove_relay_handler(self, callback: RelayHandler) -> None:
        self._mail.remove(self._mail.relay_handlers, callback)

    # --- queue ------------------------------------------------------------------------

    async def queue_submit(
        self,
        job_id: str,
        spec: dict[str, Any],
        *,
        min_gpu_memory_mb: int = 0,
        gpu_count: int = 0,
        labels: dict[str, str] | None = None,
        worker_id: str | None = None,
        priority: int = 0,
        max_retries: int = 3,
        retry_job_errors: bool = False,
        owner: str | None = None,
    ) -> int:
        """Queue a job in this room; return its position (0 = next to be dispatched).
        Follow it with :meth:`next_push` (``queue_update`` events). ``owner`` is a secret
        the caller keeps (``secrets.token_urlsafe(32)``); only its SHA-256 is sent, and
        watching or cancelling the job later needs the secret itself."""
        requirements = Requirements(min_gpu_memory_mb=min_gpu_memory_mb, gpu_count=gpu_count, labels=dict(labels or {}), worker_id=worker_id)
        owner_hash = hashlib.sha256(owner.encode()).hexdigest() if owner else None  # "" is no secret
        reply = await self._request(
            QueueSubmit(spec=spec, job_id=job_id, requirements=requirements, priority=priority, max_retries=max_retries,
                        retry_job_errors=retry_job_errors, owner_hash=owner_hash)
        )
        assert isinstance(reply, Queued)
        return reply.position

    async def queue_watch(self, job_id: str, owner: str | None = None) -> QueueUpdate:
        """Follow (and own) a queued job from this connection; return its current state.
        ``owner``: the secret given to :meth:`queue_submit` (refused with ``not_owner`` without it)."""
        reply = await self._request(QueueWatch(job_id=job_id, owner=owner or None))
        assert isinstance(reply, QueueUpdate)
        return reply

    async def queue_cancel(self, job_id: str, owner: str | None = None) -> None:
        await self._request(QueueCancel(job_id=job_id, owner=owner or None))

    async def client_report(self, job_id: str, attempt: int, outcome: str, message: str = "") -> None:
        """Client: tell the coordinator about the attempt this connection follows.
        ``auth_failed``: the dispatched worker failed the room-secret proof (the attempt is
        requeued, that worker banned from the job); ``results_received``: the verified
        results are here (a training job becomes ``succeeded``)."""
        await self._request(ClientReport(job_id=job_id, attempt=attempt, outcome=outcome, message=message[:1000]))  # type: ignore[arg-type]

    async def report(self, job_id: str, attempt: int, state: str, *, failure: str | None = None, message: str = "", detail: dict[str, Any] | None = None) -> None:
        """Worker: report on one attempt. Raises ``CoordinatorError('stale_attempt')`` when
        the job has moved on to another attempt: stop working on it."""
        await self._request(JobReport(job_id=job_id, attempt=attempt, state=state, failure=failure, message=message, detail=dict(detail or {})))  # type: ignore[arg-type]

    async def next_push(self, type_name: str | None = None, *, job_id: str | None = None, timeout: float | None = None,
                        where: Callable[[Pushed], bool] | None = None) -> Pushed:
        """Return (and remove) the oldest pushed ``queue_update``/``job_dispatch`` matching."""
        async with asyncio.timeout(timeout):
            while True:
                found = self._mail.take_push(type_name, job_id, where)
                if found is not None:
                    return found
                await self._wait_for_delivery()

    def add_push_handler(self, callback: PushHandler) -> None:
        """Call ``callback(msg)`` (sync or async) for every ``queue_update``/``job_dispatch``;
        they are still kept for :meth:`next_push` too."""
        self._mail.push_handlers.append(callback)

    def remove_push_handler(self, callback: PushHandler) -> None:
        self._mail.remove(self._mail.push_handlers, callback)

    # --- internals --------------------------------------------------------------------

    async def _request(self, msg: Message) -> Message:
        ws = self._ws
        if ws is None or not self.connected:
            if self._failure is not None:
                raise self._failure
            raise CoordinatorError("disconnected", "not connected to the coordinator (reconnecting)")
        ref = f"r{next(self._refs)}"
        msg.ref = ref  # type: ignore[attr-defined]
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            try:
                text = msg.encode()
            except ProtocolError as exc:
                raise CoordinatorError(exc.code, exc.message) from None
            await ws.send(text)
            async with asyncio.timeout(self.request_timeout):
                return await future
        except ConnectionClosed:
            raise CoordinatorError("disconnected", "the connection to the coordinator dropped") from None
        except TimeoutError:
            raise CoordinatorError("timeout", f"no reply to {msg.TYPE} within {self.request_timeout:g}s") from None
        finally:
            self._pending.pop(ref, None)

    async def _open(self) -> ClientConnection:
        ws = await open_socket(self.url, self.request_timeout)
        try:
            register = Register(
                room_id=self.room_id,
                token=self._token,
                role=self.role,
                peer_id=self.peer_id,
                metadata=self.metadata,
                status=self.status,  # type: ignore[arg-type]
                ref="register",
            )
            try:
                await ws.send(register.encode())
            except ConnectionClosed as exc:
                raise closed_error(exc) from None
            reply = await await_reply(ws, "register", self.request_timeout)
        except BaseException:
            ws.transport.abort()
            raise
        assert isinstance(reply, Registered)
        self.peer_id = reply.peer_id
        self.heartbeat_interval = reply.heartbeat_interval
        self.coordinator_ice = (reply.ice_servers, reply.ice_expires)
        self._ws = ws
        self._connected.set()
        log.info("registered with %s as %s/%s (%s)", self.url, self.room_id, self.peer_id, self.role)
        return ws

    async def _run(self, ws: ClientConnection) -> None:
        try:
            while True:
                await self._read_loop(ws)
                self._set_disconnected("disconnected", "the connection to the coordinator dropped")
                if self._failure is not None and self._failure.code in FATAL_PUSHED_CODES:
                    log.error("not reconnecting to %s: %s", self.url, self._failure)
                    break
                if self._closing or not self.reconnect:
                    if not self._closing:
                        self._failure = CoordinatorError("disconnected", "the connection to the coordinator dropped")
                    break
                reopened = await self._reconnect()
                if reopened is None:
                    break
                ws = reopened
        finally:
            self._finished.set()
            self._mail.changed.set()

    async def _reconnect(self) -> ClientConnection | None:
        attempt = 0
        while not self._closing:
            ceiling = min(self.backoff_max, self.backoff_initial * (2**attempt))
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)
            attempt += 1
            log.info("coordinator connection lost; reconnect attempt %d in %.2fs", attempt, delay)
            await asyncio.sleep(delay)
            try:
                ws = await self._open()
            except CoordinatorError as exc:
                if exc.code in FATAL_CODES:
                    log.error("giving up reconnecting to %s: %s", self.url, exc)
                    self._failure = exc
                    return None
                log.warning("reconnect attempt %d to %s failed: %s", attempt, self.url, exc)
                continue
            self.reconnects += 1
            return ws
        return None

    async def _read_loop(self, ws: ClientConnection) -> None:
        """Dispatch frames until the socket closes or the coordinator goes silent."""
        silence = max(3 * self.heartbeat_interval, 1.0)
        try:
            while True:
                try:
                    async with asyncio.timeout(silence):
                        raw = await ws.recv()
                except TimeoutError:
                    try:  # frames that arrived while this process was stalled are read first (recv is cancel-safe)
                        async with asyncio.timeout(silence / 4):
                            raw = await ws.recv()
                    except TimeoutError:
                        log.warning("no frame from the coordinator for %.0fs; reconnecting", silence)
                        ws.transport.abort()
                        return
                await self._dispatch(ws, raw)
        except ConnectionClosed:
            return

    async def _dispatch(self, ws: ClientConnection, raw: str | bytes) -> None:
        try:
            msg = COORDINATOR.decode(raw)
        except ProtocolError as exc:
            log.warning("ignoring bad frame from the coordinator: %s", exc)
            return
        if isinstance(msg, Ping):
            await ws.send(Pong(ts=msg.ts).encode())
            return
        if isinstance(msg, Relay):
            self._mail.deliver(msg)
            return
        ref = getattr(msg, "ref", None)
        future = self._pending.get(ref) if ref is not None else None
        if future is not None and not future.done():
            if isinstance(msg, Error):
                future.set_exception(CoordinatorError(msg.code, msg.message, source=msg.source))
            else:
                future.set_result(msg)
        elif isinstance(msg, (QueueUpdate, JobDispatch)):
            self._mail.push(msg)
        elif isinstance(msg, Error):
            log.warning("coordinator error: %s: %s", msg.code, msg.message)
            if msg.code in FATAL_PUSHED_CODES:
                self._failure = CoordinatorError(msg.code, msg.message)
        elif not isinstance(msg, (Pong, Ok)):
            log.debug("ignoring unsolicited %s from the coordinator", msg.TYPE)

    def _set_disconnected(self, code: str, message: str) -> None:
        self._connected.clear()
        self._ws = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CoordinatorError(code, message))
        self._pending.clear()
