"""One live registration: who a peer said it is, on which socket, and its discovery rank.

Kept apart from presence.py and discovery.py so both may import it without importing
each other; the room index holding an entry is only known through :class:`Index`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..protocol.coordinator import PeerInfo


class Index(Protocol):
    """What an entry needs of the room index holding it: to leave and rejoin on a change."""

    def add(self, entry: PeerEntry) -> None: ...

    def discard(self, entry: PeerEntry) -> bool: ...


@dataclass(eq=False)
class PeerEntry:
    peer_id: str
    room_id: str
    role: str
    status: str
    metadata: dict[str, Any]
    link: Any
    room_expires_at: float
    connected_at: float = field(default_factory=time.time)
    #: Registered with a worker token (revoking it drops this connection).
    via_token: bool = False
    #: What the peer itself last said, before admin policy (labels, drain) was applied.
    reported_status: str = ""
    reported_labels: dict[str, Any] = field(default_factory=dict)
    _info_json: str | None = field(default=None, repr=False)
    #: Largest free GPU memory over ``metadata["gpus"]`` (the discovery rank), kept current.
    free_gpu_mb: int = field(default=0, repr=False)
    #: The room index holding this entry, told of every change (None: not in presence).
    index: Index | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.free_gpu_mb = max_free_gpu_mb(self.metadata)

    def update(self, *, status: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        """Change status and/or metadata; the room's discovery index follows (an update
        that changes nothing leaves the index, and its cached replies, alone)."""
        if (status is None or status == self.status) and (metadata is None or metadata == self.metadata):
            return
        index = self.index
        if index is not None:
            index.discard(self)
        if status is not None:
            self.status = status
        if metadata is not None:
            self.metadata = metadata
            self.free_gpu_mb = max_free_gpu_mb(metadata)
        self._info_json = None
        if index is not None:
            index.add(self)

    def info_json(self) -> str:
        """This peer's :class:`PeerInfo` as compact JSON, cached until it changes, so a
        discover over hundreds of peers does not re-serialize every one."""
        if self._info_json is None:
            self._info_json = json.dumps(asdict(self.info()), separators=(",", ":"))
        return self._info_json

    def info(self) -> PeerInfo:
        return PeerInfo(
            peer_id=self.peer_id,
            role=self.role,  # type: ignore[arg-type]
            status=self.status,  # type: ignore[arg-type]
            metadata=self.metadata,
            connected_at=self.connected_at,
        )


def max_free_gpu_mb(metadata: dict[str, Any]) -> int:
    """Largest ``memory_free_mb`` over ``metadata["gpus"]``; 0 for CPU workers or junk."""
    gpus = metadata.get("gpus")
    best = 0
    if isinstance(gpus, list):
        for gpu in gpus:
            if isinstance(gpu, dict):
                free = gpu.get("memory_free_mb")
                if isinstance(free, (int, float)) and not isinstance(free, bool) and free > best:
                    best = int(free)
    return best
