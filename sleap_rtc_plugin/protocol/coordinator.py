"""Messages between a peer (worker or client) and the coordinator.

The coordinator fills in ``source`` on everything it relays; a ``source`` sent by a
peer is ignored, which is what makes impersonation impossible: the sender's identity
is the socket it registered on, never a field it wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .base import Message, Registry, require
from .metadata import check_metadata
from .names import PeerId, RoomId

COORDINATOR = Registry("coordinator")

Role = Literal["worker", "client"]
PeerStatus = Literal["available", "reserved", "busy", "offline", "draining"]

MAX_ID = 128

#: A worker token (``sleap-rtc admin token create``) starts with this; a room token never does.
WORKER_TOKEN_PREFIX = "swt_"
MAX_SDP = 64 * 1024


def _short(value: str, name: str, limit: int = MAX_ID) -> None:
    require(0 < len(value) <= limit, "bad_value", f"{name} must be 1..{limit} characters")


# --- rooms -----------------------------------------------------------------


@COORDINATOR.register
@dataclass
class CreateRoom(Message):
    """Ask for a new room. The reply carries the token once; only its hash is stored.
    ``admin_token`` is needed where the coordinator sets ``server.room_creation = admin``."""

    TYPE = "create_room"
    ttl_hours: float = 24.0 * 30
    ref: str | None = None
    admin_token: str | None = None

    def validate(self) -> None:
        if self.admin_token is not None:
            _short(self.admin_token, "admin_token", 512)


@COORDINATOR.register
@dataclass
class RoomCreated(Message):
    TYPE = "room_created"
    room_id: RoomId
    token: str
    expires_at: float
    ref: str | None = None


# --- registration ------------------------------------------------------------


@COORDINATOR.register
@dataclass
class Register(Message):
    """Join a room. ``peer_id`` is a request: the coordinator may refuse one in use."""

    TYPE = "register"
    room_id: RoomId
    token: str
    role: Role
    peer_id: PeerId | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    status: PeerStatus = "available"
    ref: str | None = None

    def validate(self) -> None:
        _short(self.room_id, "room_id")
        _short(self.token, "token", 512)
        if self.peer_id is not None:
            _short(self.peer_id, "peer_id")
        check_metadata(self.metadata, "register.metadata")


@COORDINATOR.register
@dataclass
class Registered(Message):
    TYPE = "registered"
    peer_id: PeerId
    room_id: RoomId
    heartbeat_interval: float
    ref: str | None = None
    #: STUN/TURN servers for this peer's WebRTC links (``{"urls", "username", "credential"}``),
    #: with short-lived TURN credentials when the coordinator holds a TURN secret.
    ice_servers: list[dict[str, Any]] | None = None
    #: Unix time the TURN credentials expire; ask again (``ice_refresh``) before then.
    ice_expires: int | None = None


@COORDINATOR.register
@dataclass
class IceRefresh(Message):
    """Ask for fresh TURN credentials (answered with ``ice_servers``)."""

    TYPE = "ice_refresh"
    ref: str | None = None


@COORDINATOR.register
@dataclass
class IceServers(Message):
    TYPE = "ice_servers"
    servers: list[dict[str, Any]]
    expires: int | None = None
    ref: str | None = None


@COORDINATOR.register
@dataclass
class UpdatePeer(Message):
    """Change this peer's own status and/or metadata (never another peer's)."""

    TYPE = "update_peer"
    status: PeerStatus | None = None
    metadata: dict[str, Any] | None = None
    ref: str | None = None

    def validate(self) -> None:
        if self.metadata is not None:
            check_metadata(self.metadata, "update_peer.metadata")


@COORDINATOR.register
@dataclass
class Discover(Message):
    """List peers in the caller's room, filtered."""

    TYPE = "discover"
    role: Role | None = "worker"
    status: PeerStatus | None = None
    min_gpu_memory_mb: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    ref: str | None = None
    #: At most this many peers come back (the coordinator also caps by frame size).
    limit: int | None = None


@dataclass
class PeerInfo:
    peer_id: PeerId
    role: Role
    status: PeerStatus
    metadata: dict[str, Any]
    connected_at: float = 0.0


@COORDINATOR.register
@dataclass
class PeerList(Message):
    TYPE = "peer_list"
    peers: list[PeerInfo]
    ref: str | None = None
    #: True when more peers matched than fit in this reply (see ``Discover.limit``).
    truncated: bool = False


# --- relay -------------------------------------------------------------------


@COORDINATOR.register
@dataclass
class Relay(Message):
    """An opaque payload for another peer of the same room (SDP offer/answer, routed errors).

    ``kind`` says what the payload is; the coordinator does not look inside beyond its
    size. ``source`` is set by the coordinator on delivery.
    """

    TYPE = "relay"
    target: PeerId
    kind: Literal["offer", "answer", "reject", "bye"]
    payload: dict[str, Any]
    source: str | None = None
    ref: str | None = None

    def validate(self) -> None:
        _short(self.target, "target")


# --- liveness and errors -------------------------------------------------------


@COORDINATOR.register
@dataclass
class Ping(Message):
    TYPE = "ping"
    ts: float = 0.0


@COORDINATOR.register
@dataclass
class Pong(Message):
    TYPE = "pong"
    ts: float = 0.0


@COORDINATOR.register
@dataclass
class Ok(Message):
    TYPE = "ok"
    ref: str | None = None


@COORDINATOR.register
@dataclass
class Error(Message):
    """A typed error. ``code`` is stable; ``message`` is one actionable line."""

    TYPE = "error"
    code: str
    message: str
    ref: str | None = None
    source: str | None = None
