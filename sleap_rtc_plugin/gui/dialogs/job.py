"""Following one remote job from a dialog: events → progress line, result → callback.

Shared by the train and track dialogs so both show transfers, status and errors the
same way. Everything here runs on the qasync loop; nothing blocks it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from .connection import ConnectionPanel

logger = logging.getLogger(__name__)


def thread_progress(panel: ConnectionPanel, what: str) -> Callable[[int, int], None]:
    """A progress callback safe to call from a worker thread (packaging)."""
    loop = asyncio.get_running_loop()

    def report(done: int, total: int) -> None:
        loop.call_soon_threadsafe(panel.status.setText, f"{what}… {done} of {total} frames")

    return report


def apply_event(panel: ConnectionPanel, event: Any) -> None:
    """Show one ``JobEvent`` in the panel (training curves go through ZMQ instead)."""
    data = event.data or {}
    if event.kind == "transfer":
        total = int(data.get("total") or 0)
        done = int(data.get("sent", data.get("done", 0)) or 0)
        direction = "Receiving results" if data.get("direction") == "download" else f"Sending {data.get('name') or 'package'}"
        if total:
            panel.show_transfer(done, total, direction)
    elif event.kind == "status":
        state = data.get("state", "")
        message = data.get("message", "")
        panel.status.setText(f"Job {state}{': ' + message if message else ''}")
    elif event.kind == "progress":
        n, total = data.get("n_processed"), data.get("n_total")
        if n is not None and total:
            panel.progress.setVisible(True)
            panel.progress.setFormat("%v / %m frames")
            panel.progress.setMaximum(int(total))
            panel.progress.setValue(int(n))
    elif event.kind == "log":
        logger.info("worker: %s", data.get("line", ""))


async def follow(handle: Any, panel: ConnectionPanel):
    """Show ``handle``'s events until its result is known; return the ``JobOutcome``."""

    async def pump() -> None:
        async for event in handle.events():
            apply_event(panel, event)

    pump_task = asyncio.ensure_future(pump())
    try:
        return await handle.result()
    finally:
        if not pump_task.done():
            pump_task.cancel()
        await asyncio.gather(pump_task, return_exceptions=True)
