"""One websocket connection as the coordinator sees it, with its own outbox.

Writes go through a small per-connection queue drained by the connection's own task,
so one slow peer can never stall the handler of the peer relaying to it; a peer whose
outbox overflows has stopped reading and is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..protocol.base import Message

if TYPE_CHECKING:
    from .presence import PeerEntry

log = logging.getLogger(__name__)

#: Frames queued for one slow socket before it is dropped.
OUTBOX_SIZE = 256
#: Close code for a peer dropped by the server (heartbeat, slow consumer, expiry).
CLOSE_DROPPED = 4000


@dataclass(eq=False)
class Link:
    """Server-side state of one websocket connection."""

    conn: ServerConnection
    outbox: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(OUTBOX_SIZE))
    last_seen: float = field(default_factory=time.monotonic)
    entry: PeerEntry | None = None
    writer: asyncio.Task[None] | None = None
    closer: asyncio.Task[None] | None = None
    dropped: bool = False

    @property
    def who(self) -> str:
        if self.entry is not None:
            return f"{self.entry.room_id}/{self.entry.peer_id}"
        addr = self.conn.remote_address
        return f"{addr[0]}:{addr[1]}" if addr else "?"

    def send(self, msg: Message) -> None:
        """Queue a frame; never awaits. Overflow means the peer stopped reading: drop it."""
        self.send_text(msg.encode())

    def send_text(self, text: str) -> None:
        if self.dropped:
            return
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.drop("outbox overflow (peer is not reading)")

    def drop(self, reason: str) -> None:
        if self.dropped:
            return
        self.dropped = True
        log.warning("dropping connection %s: %s", self.who, reason)
        self.closer = asyncio.get_running_loop().create_task(self.conn.close(CLOSE_DROPPED, reason[:120]))

    async def drop_when_flushed(self, reason: str, within: float = 2.0) -> None:
        """Close once the queued frames (the reason for closing) are written."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:  # the outbox has no "empty" event to wait on
            if self.outbox.empty() or self.dropped:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the writer has taken the last frame; let it finish sending
        self.drop(reason)

    async def write_loop(self) -> None:
        try:
            while True:
                text = await self.outbox.get()
                await self.conn.send(text)
        except ConnectionClosed:
            pass


def ref_of(raw: str | bytes) -> str | None:
    """Best-effort ``ref`` from a frame that failed validation, so the error can be correlated."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    ref = data.get("ref") if isinstance(data, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= 128 else None
