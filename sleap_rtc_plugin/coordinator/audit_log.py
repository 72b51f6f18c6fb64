"""Audit rows written in batches, in order, off the event loop.

One database round trip per audit row (a thread hop and, on a file database, a commit)
was the largest single cost of a registration after the websocket handshake: a lab
registering a thousand workers at once paid a thousand commits. Rows are stamped when
the event happens and queued; one writer task takes everything queued so far and
writes it as one transaction, so a burst costs one commit and the order is kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)

#: (ts, kind, actor, room_id, subject, detail-json), the audit table's columns.
AuditRow = tuple[float, str, str, "str | None", "str | None", str]


class AuditWriter:
    """Queue audit rows without waiting; :meth:`flush` waits until all are written."""

    def __init__(self, write_many: Callable[[list[AuditRow]], Awaitable[None]]) -> None:
        self._write_many = write_many
        self._pending: list[AuditRow] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, kind: str, actor: str, *, room_id: str | None = None, subject: str | None = None, detail: dict[str, Any] | None = None) -> None:
        self._pending.append((time.time(), kind, actor, room_id, subject, json.dumps(detail or {}, default=str)))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            rows, self._pending = self._pending, []
            try:
                await self._write_many(rows)
            except Exception:  # noqa: BLE001 - the audit log failing must not fail requests
                log.exception("audit write failed (%d rows, first %s by %s)", len(rows), rows[0][1], rows[0][2])

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
