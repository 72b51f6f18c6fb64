"""One-shot requests to the coordinator, and the error every coordinator client raises.

``create_room`` and ``admin_request`` open a socket, send one frame, read its reply and
close; :class:`~.client.CoordinatorClient` (the long-lived, reconnecting registration)
shares the socket opening and error mapping defined here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..protocol.base import Message, ProtocolError
from ..protocol.coordinator import COORDINATOR, CreateRoom, Error, Ping, Pong, RoomCreated
from ..protocol.queue import AdminRequest, AdminResult
from .tls import TLSConfigError, client_context, describe_failure

log = logging.getLogger(__name__)

#: Largest frame read from the coordinator.
WS_MAX_SIZE = 1024 * 1024


class CoordinatorError(Exception):
    """An ``error`` reply from the coordinator, or a connection problem.

    ``code`` is the protocol error code (see docs/protocol.md) or one of the local
    codes ``unreachable``, ``disconnected``, ``timeout``, ``closed``.
    """

    def __init__(self, code: str, message: str, *, source: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.source = source


class RelayRejected(CoordinatorError):
    """The peer being waited on sent a ``reject`` relay instead (e.g. the worker is busy)."""


async def open_socket(url: str, timeout: float) -> ClientConnection:
    """Open ``url`` (``ws://`` or ``wss://``, see :mod:`.tls` for what ``wss`` trusts)."""
    try:
        context = await asyncio.to_thread(client_context, url)  # reads CA files: off the loop
        if context is not None:
            return await connect(url, ping_interval=None, max_size=WS_MAX_SIZE, open_timeout=timeout, close_timeout=2, ssl=context)
        return await connect(url, ping_interval=None, max_size=WS_MAX_SIZE, open_timeout=timeout, close_timeout=2)
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError, TLSConfigError) as exc:
        raise CoordinatorError("unreachable", describe_failure(url, exc)) from None


async def await_reply(ws: ClientConnection, ref: str, timeout: float) -> Message:
    """Read frames until the one answering ``ref`` (used before the reader task runs)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                raw = await ws.recv()
                try:
                    msg = COORDINATOR.decode(raw)
                except ProtocolError as exc:
                    log.warning("ignoring bad frame from coordinator: %s", exc)
                    continue
                if isinstance(msg, Ping):
                    await ws.send(Pong(ts=msg.ts).encode())
                elif getattr(msg, "ref", None) == ref:
                    if isinstance(msg, Error):
                        raise CoordinatorError(msg.code, msg.message)
                    return msg
    except TimeoutError:
        raise CoordinatorError("timeout", f"no reply from the coordinator within {timeout:g}s") from None
    except ConnectionClosed as exc:
        raise closed_error(exc) from None


def closed_error(exc: ConnectionClosed) -> CoordinatorError:
    """The coordinator's reason when it turned us away (``rate_limited: ...``), else ``disconnected``."""
    reason = exc.rcvd.reason if exc.rcvd is not None else ""
    if reason.startswith("rate_limited: "):
        return CoordinatorError("rate_limited", reason.removeprefix("rate_limited: "))
    return CoordinatorError("disconnected", f"the coordinator closed the connection ({exc})")


async def create_room(url: str, ttl_hours: float = 720.0, *, timeout: float = 10.0, admin_token: str | None = None) -> tuple[str, str, float]:
    """Ask the coordinator at ``url`` for a new room: ``(room_id, token, expires_at)``.

    The token is shown only here; the coordinator keeps just its hash. ``admin_token``
    is needed by a coordinator that lets only administrators create rooms.
    """
    ws = await open_socket(url, timeout)
    try:
        await ws.send(CreateRoom(ttl_hours=ttl_hours, ref="create", admin_token=admin_token).encode())
        reply = await await_reply(ws, "create", timeout)
    finally:
        await ws.close()
    if not isinstance(reply, RoomCreated):
        raise CoordinatorError("unexpected_type", f"expected room_created, got {reply.TYPE}")
    return reply.room_id, reply.token, reply.expires_at


async def admin_request(url: str, token: str, action: str, args: dict[str, Any] | None = None, *, timeout: float = 10.0) -> Any:
    """Run one admin action (``sleap-rtc admin ...``) and return its result."""
    ws = await open_socket(url, timeout)
    try:
        try:
            frame = AdminRequest(token=token, action=action, args=dict(args or {}), ref="admin").encode()  # type: ignore[arg-type]
        except ProtocolError as exc:
            raise CoordinatorError(exc.code, exc.message) from None
        await ws.send(frame)
        reply = await await_reply(ws, "admin", timeout)
    finally:
        await ws.close()
    if not isinstance(reply, AdminResult):
        raise CoordinatorError("unexpected_type", f"expected admin_result, got {reply.TYPE}")
    return reply.result
