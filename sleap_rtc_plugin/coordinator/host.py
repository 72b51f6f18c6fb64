"""What the request handlers (registration, admin) need of the coordinator server.

A structural type, so the handlers depend on this narrow surface rather than on
server.py, and server.py can import them without an import cycle.
"""

from __future__ import annotations

from typing import Any, Protocol

from .jobstore import JobStore
from .link import Link
from .peer_entry import PeerEntry
from .presence import Presence
from .queue import JobQueue
from .store import RoomStore
from .turn import TurnConfig


class CoordinatorHost(Protocol):
    store: RoomStore
    jobstore: JobStore
    presence: Presence
    queue: JobQueue
    turn: TurnConfig
    heartbeat_interval: float

    def audit(self, kind: str, actor: str, *, room_id: str | None = None, subject: str | None = None,
              detail: dict[str, Any] | None = None) -> None: ...

    async def flush_audit(self) -> None: ...

    def apply_policy(self, entry: PeerEntry) -> None: ...

    def disconnect(self, entry: PeerEntry, reason: str) -> None: ...

    def forget(self, link: Link, why: str) -> None: ...

    def is_live(self, link: Link) -> bool: ...
