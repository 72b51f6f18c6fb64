"""Heartbeats spread over the interval instead of sent in one burst.

Pinging every connection at the same instant made thousands of ``pong`` frames arrive
together: at 5,000 peers that is most of a second of the server's CPU in one block,
and every discover queued behind it (the under-load p99). Each connection is given a
fixed slot out of :data:`SLOTS` when it connects; one tick every ``interval / SLOTS``
serves one slot. A connection is therefore visited exactly once per interval, at the
same phase every time, as before: the gap between two of its pings is one interval,
and a silent peer is still dropped at most one interval after its timeout.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

#: Ticks per heartbeat interval.
SLOTS = 10


class HeartbeatSlots(Generic[T]):
    """Connections by slot; round-robin assignment keeps the slots within one of each
    other as connections arrive (departures may leave them uneven until new ones come)."""

    def __init__(self, slots: int = SLOTS) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self._slots: list[dict[T, None]] = [{} for _ in range(slots)]
        self._slot_of: dict[T, int] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self._slot_of)

    @property
    def count(self) -> int:
        return len(self._slots)

    def add(self, item: T) -> None:
        if item in self._slot_of:
            return
        slot = self._next
        self._next = (self._next + 1) % len(self._slots)
        self._slots[slot][item] = None
        self._slot_of[item] = slot

    def discard(self, item: T) -> None:
        slot = self._slot_of.pop(item, None)
        if slot is not None:
            del self._slots[slot][item]

    def due(self, tick: int) -> list[T]:
        """The connections tick ``tick`` serves (a copy: the caller may drop them)."""
        return list(self._slots[tick % len(self._slots)])
