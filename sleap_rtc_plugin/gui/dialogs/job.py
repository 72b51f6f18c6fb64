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
    tracker = getattr(panel, "job_stages", None)

    def report(done: int, total: int) -> None:
        if tracker is not None:
            loop.call_soon_threadsafe(tracker.packaging_progress, done, total)
        else:
            loop.call_soon_threadsafe(panel.status.setText, f"{what}… {done} of {total} frames")

    return report


def apply_event(panel: ConnectionPanel, event: Any) -> None:
    """Show one ``JobEvent`` as the job's stage (training curves go through ZMQ too)."""
    tracker = getattr(panel, "job_stages", None) or panel.tracker("train")
    tracker.apply(event)


async def follow(handle: Any, panel: ConnectionPanel, on_event: Callable[[Any], None] | None = None):
    """Show ``handle``'s events until its result is known; return the ``JobOutcome``.

    ``on_event(event)`` runs after each event is shown (the dialog detaches from there)."""
    if getattr(panel, "job_stages", None) is None:
        panel.tracker(getattr(handle, "kind", "train"))

    async def pump() -> None:
        async for event in handle.events():
            apply_event(panel, event)
            if on_event is not None:
                on_event(event)

    pump_task = asyncio.ensure_future(pump())
    try:
        return await handle.result()
    finally:
        await asyncio.wait({pump_task}, timeout=1.0)  # the last events (the end of an upload, the result) still show
        if not pump_task.done():
            pump_task.cancel()
        await asyncio.gather(pump_task, return_exceptions=True)
