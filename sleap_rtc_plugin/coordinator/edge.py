"""The coordinator's front door: what anyone who can reach the port may do without a token.

:class:`Edge` applies the per-address limits of :mod:`.limits` at the points where the
server meets an unauthenticated peer: accepting a connection, checking a credential,
creating a room, and writing a failed-auth audit row. Each refusal is a ``rate_limited``
(or ``admin_required`` / ``bad_value``) :class:`ProtocolError` with one actionable line;
a connection that keeps going after refusals is closed by the server.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..protocol.base import ProtocolError
from ..protocol.coordinator import CreateRoom, Error
from .limits import AddressLimiter, EdgeLimits, retry_text
from .store import MAX_TTL_HOURS

log = logging.getLogger(__name__)

#: Close code for a connection refused or cut off by the per-address limits ("try again later").
CLOSE_RATE_LIMITED = 1013
#: Refusals that count against an address's failed-authentication budget.
AUTH_FAILURE_CODES = frozenset({"bad_token", "bad_admin_token", "token_required", "admin_required"})
#: Audit kinds coalesced per address and window (see :mod:`.limits`).
AUTH_FAILURE_AUDIT = frozenset({"register_failed", "admin_auth_failed"})

AuditWriter = Callable[..., None]


def address_of(conn: ServerConnection) -> str:
    addr = conn.remote_address
    return str(addr[0]) if addr else "?"


async def refuse(conn: ServerConnection, message: str) -> None:
    """Turn a connection away before reading anything: one typed error, then a close
    whose reason (``rate_limited: ...``) the client reports as the error."""
    log.debug("refused connection from %s: %s", address_of(conn), message)
    with contextlib.suppress(ConnectionClosed):
        await conn.send(Error(code="rate_limited", message=message).encode())
        await conn.close(CLOSE_RATE_LIMITED, f"rate_limited: {message}"[:120])


class Edge:
    def __init__(self, limits: EdgeLimits | None, audit_now: AuditWriter):
        self.limiter = AddressLimiter(limits)
        self.limits = self.limiter.limits
        self._audit_now = audit_now

    async def admit(self, conn: ServerConnection) -> str | None:
        """The connection's address if it may proceed (then :meth:`release` it when it
        ends); ``None`` after turning it away (too many connections, or an address whose
        failed-auth budget is spent)."""
        address = address_of(conn)
        if not self.limiter.connect(address):
            limit = self.limits.max_connections_per_address
            await refuse(conn, f"too many connections from {address} (at most {limit} at once); close some, then {retry_text(10)}")
            return None
        wait = self.limiter.auth_wait(address)
        if wait:
            self.limiter.disconnect(address)
            await refuse(conn, f"too many failed authentications from {address}; {retry_text(wait)}")
            return None
        return address

    def release(self, address: str) -> None:
        self.limiter.disconnect(address)

    def before_credentials(self, address: str, ref: str | None) -> None:
        """Refuse to even check a credential from an address over its failed-auth budget."""
        wait = self.limiter.auth_wait(address)
        if wait:
            raise ProtocolError("rate_limited", f"too many failed authentications from this address; {retry_text(wait)}", ref=ref)

    def refused(self, address: str, exc: ProtocolError) -> bool:
        """Account for a refusal sent to ``address``; ``True`` if it was a rate limit
        (a strike against the connection)."""
        if exc.code in AUTH_FAILURE_CODES:
            self.limiter.auth_failed(address)
        return exc.code == "rate_limited"

    async def authorize_room(self, address: str, who: str, msg: CreateRoom, check_admin_token: Callable[[str], Awaitable[str | None]]) -> str | None:
        """Check a ``create_room`` against the TTL cap, ``room_creation`` and the room rate;
        return the admin's name when an admin token was required (else ``None``)."""
        max_ttl = min(self.limits.max_room_ttl_hours, MAX_TTL_HOURS)
        if not (0 < msg.ttl_hours <= max_ttl):
            raise ProtocolError("bad_value", f"ttl_hours must be in (0, {max_ttl:g}] on this coordinator (server.max_room_ttl_hours)", ref=msg.ref)
        name = None
        if self.limits.room_creation == "admin":
            if not msg.admin_token:
                raise ProtocolError("admin_required", "this coordinator creates rooms only with an admin token (server.room_creation = admin); pass --admin-token or ask its administrator", ref=msg.ref)
            name = await check_admin_token(msg.admin_token)
            if name is None:
                self.audit("admin_auth_failed", who, subject="create_room")
                raise ProtocolError("bad_admin_token", "admin token not recognised; create one with `sleap-rtc admin init --db COORDINATOR_DB`", ref=msg.ref)
        wait = self.limiter.take_room(address)
        if wait:
            raise ProtocolError("rate_limited", f"room creation limit reached for this address ({self.limits.rooms_per_hour:g} per hour); {retry_text(wait)}", ref=msg.ref)
        return name

    def audit(self, kind: str, actor: str, **fields: Any) -> None:
        """Write an audit row, coalescing failed-auth rows per address and window."""
        if kind in AUTH_FAILURE_AUDIT:
            self.flush_summaries()
            if not self.limiter.audit_failure(actor.rsplit(":", 1)[0], kind):
                return
        self._audit_now(kind, actor, **fields)

    def flush_summaries(self, *, everything: bool = False) -> None:
        for address, count, kinds in self.limiter.due_summaries(everything=everything):
            self._audit_now("auth_failures_suppressed", address, detail={"count": count, "kinds": kinds, "window_s": self.limits.audit_window_seconds})
