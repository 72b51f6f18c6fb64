"""Live presence: who is connected to which room, as what, right now.

Kept in memory on purpose: presence is only true while a socket is open, so after a
restart it must be rebuilt by peers re-registering, never read back from disk. Each
entry holds the connection object it was registered on; that binding is what makes a
peer unable to speak for, or change, another.
"""

from __future__ import annotations


from .discovery import Query, RoomIndex
from .peer_entry import PeerEntry, max_free_gpu_mb

__all__ = ["PeerEntry", "Presence", "matches", "max_free_gpu_mb", "rank"]


def matches(
    entry: PeerEntry,
    *,
    role: str | None,
    status: str | None,
    min_gpu_memory_mb: int | None,
    labels: dict[str, str],
) -> bool:
    if role is not None and entry.role != role:
        return False
    if status is not None and entry.status != status:
        return False
    if min_gpu_memory_mb is not None and max_free_gpu_mb(entry.metadata) < min_gpu_memory_mb:
        return False
    if labels:
        have = entry.metadata.get("labels")
        if not isinstance(have, dict) or any(have.get(k) != v for k, v in labels.items()):
            return False
    return True


def rank(entry: PeerEntry) -> tuple[int, int, str]:
    """Sort key: available first, then most free GPU memory, then id (stable output).

    With :func:`matches`, the definition of a discover's result; :mod:`discovery`
    computes the same from its indexes (the tests check one against the other)."""
    return (0 if entry.status == "available" else 1, -max_free_gpu_mb(entry.metadata), entry.peer_id)


class Presence:
    """Rooms → peers, indexed for discovery (:class:`discovery.RoomIndex`). All methods
    are synchronous and never await, so each is atomic with respect to the event loop
    (check-then-insert cannot interleave)."""

    def __init__(self) -> None:
        self._rooms: dict[str, RoomIndex] = {}

    def __len__(self) -> int:
        return sum(len(room) for room in self._rooms.values())

    def room_count(self) -> int:
        return len(self._rooms)

    def room(self, room_id: str) -> RoomIndex | None:
        return self._rooms.get(room_id)

    def get(self, room_id: str, peer_id: str) -> PeerEntry | None:
        room = self._rooms.get(room_id)
        return room.peers.get(peer_id) if room is not None else None

    def add(self, entry: PeerEntry) -> None:
        room = self._rooms.get(entry.room_id)
        if room is None:
            room = self._rooms[entry.room_id] = RoomIndex()
        room.add(entry)

    def remove(self, entry: PeerEntry) -> bool:
        """Remove ``entry`` only if it is still the registered one (a reconnect may have
        replaced it); return whether it was removed."""
        room = self._rooms.get(entry.room_id)
        if room is None or not room.discard(entry):
            return False
        if not room.peers:
            del self._rooms[entry.room_id]
        return True

    def find(
        self,
        room_id: str,
        *,
        exclude: str | None = None,
        role: str | None = None,
        status: str | None = None,
        min_gpu_memory_mb: int | None = None,
        labels: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> list[PeerEntry]:
        """Peers of a room matching every given filter, in :func:`rank` order."""
        room = self._rooms.get(room_id)
        if room is None:
            return []
        query = Query.of(role=role, status=status, min_gpu_memory_mb=min_gpu_memory_mb, labels=labels)
        return room.find(query, exclude=exclude, limit=limit)

    def entries(self) -> list[PeerEntry]:
        return [e for room in self._rooms.values() for e in room.peers.values()]
