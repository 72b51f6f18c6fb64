"""Log lines of a running job, sent to its followers in batches.

sleap-nn prints its whole config (~600 lines) at start and redraws its progress bars
with ``\\r`` many times a second; as one data-channel message per line that was ~1,500
messages for a two-epoch job, and each costs the worker and the client a DTLS record and
an SCTP packet in Python (a few hundred µs of CPU a side). On a machine where the worker shares
the CPU with the training it serves, that CPU is taken from the training. Lines that
arrive together (one pipe read) now leave as one ``log`` frame whose ``line`` joins them
with ``\\n`` (a line never contains one: the executor splits on ``\\n`` and ``\\r``), which
older clients print as it is and newer ones split back into lines. Nothing waits:
a batch leaves on the next turn of the event loop, and a progress event first flushes
the lines before it, so the order a follower sees is the order sleap-nn printed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

#: Characters per frame: even if every one is escaped to 12 (a surrogate pair as two
#: ``\uXXXX``), a frame stays under the protocol's 256 KiB limit.
MAX_BATCH_CHARS = 16 * 1024


class LogBatcher:
    """Collect lines; :meth:`flush` sends what is pending as frames of joined lines."""

    def __init__(self, send: Callable[[str], Awaitable[None]]):
        self._send = send
        self._pending: list[str] = []
        self._scheduled = False

    def add(self, line: str) -> bool:
        """Queue ``line``; return True when the caller should schedule a :meth:`flush`
        (the first line since the last flush)."""
        self._pending.append(line)
        if self._scheduled:
            return False
        self._scheduled = True
        return True

    def take(self) -> list[str]:
        """The pending lines as frame texts, each at most :data:`MAX_BATCH_CHARS`; a
        longer line is cut there and says how much was cut."""
        lines, self._pending, self._scheduled = self._pending, [], False
        batches: list[str] = []
        current: list[str] = []
        size = 0
        for line in lines:
            if len(line) > MAX_BATCH_CHARS:
                note = f" … ({len(line) - MAX_BATCH_CHARS + 64} more characters)"
                line = line[: MAX_BATCH_CHARS - 64] + note
            if current and size + len(line) + 1 > MAX_BATCH_CHARS:
                batches.append("\n".join(current))
                current, size = [], 0
            current.append(line)
            size += len(line) + 1
        if current:
            batches.append("\n".join(current))
        return batches

    async def flush(self) -> None:
        for text in self.take():
            await self._send(text)

    async def flush_soon(self) -> None:
        """Flush after the lines already read in this turn of the loop have been added."""
        await asyncio.sleep(0)
        await self.flush()
