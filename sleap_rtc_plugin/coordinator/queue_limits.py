"""Caps on how many unfinished jobs a room, and one client in it, may hold.

Every queued job is a row on disk and an entry in the dispatcher's scans; without a cap a
script in a loop (or a hostile client holding the room token) grows both without bound
and pushes every colleague's job back. A submit over a cap is refused with ``queue_full``
before anything is stored; a retried submit of a job already queued is never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..protocol.base import ProtocolError
from .jobstore import QueuedJob

DEFAULT_MAX_JOBS_PER_ROOM = 1000
DEFAULT_MAX_JOBS_PER_CLIENT = 100


@dataclass(frozen=True)
class QueueLimits:
    """``server.max_jobs_per_room`` / ``server.max_jobs_per_client``; 0 lifts a cap."""

    max_jobs_per_room: int = DEFAULT_MAX_JOBS_PER_ROOM
    max_jobs_per_client: int = DEFAULT_MAX_JOBS_PER_CLIENT

    def __post_init__(self) -> None:
        if self.max_jobs_per_room < 0 or self.max_jobs_per_client < 0:
            raise ValueError("server.max_jobs_per_room and server.max_jobs_per_client must be 0 (no cap) or more")

    def check(self, unfinished: Iterable[QueuedJob], room_id: str, client_id: str, ref: str | None) -> None:
        """Raise ``queue_full`` if one more job for ``client_id`` in ``room_id`` exceeds a cap."""
        in_room = mine = 0
        for job in unfinished:
            if job.room_id == room_id:
                in_room += 1
                mine += job.client_id == client_id
        if self.max_jobs_per_client and mine >= self.max_jobs_per_client:
            raise ProtocolError(
                "queue_full",
                f"you already have {mine} unfinished jobs in this room (cap server.max_jobs_per_client={self.max_jobs_per_client}); "
                "let some finish or cancel some, then submit again",
                ref=ref,
            )
        if self.max_jobs_per_room and in_room >= self.max_jobs_per_room:
            raise ProtocolError(
                "queue_full",
                f"this room's queue is full ({in_room} unfinished jobs, cap server.max_jobs_per_room={self.max_jobs_per_room}); "
                "submit again later or ask the administrator to raise the cap",
                ref=ref,
            )
