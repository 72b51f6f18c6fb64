"""asyncio inside Qt's event loop (qasync), and a safe way to start coroutines from slots.

Dialogs never block: a slot calls :func:`spawn`, the coroutine runs on the one
loop that Qt also drives, and results come back through callbacks or Qt signals.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Coroutine

from ..util.tasks import TaskSet

logger = logging.getLogger(__name__)

_tasks = TaskSet(logger, "gui")


def install_event_loop(app: Any) -> Any:
    """Make a qasync loop driven by ``app`` the current asyncio loop (idempotent); returns the
    ``qasync.QEventLoop`` (an ``asyncio.AbstractEventLoop`` and a context manager)."""
    import qasync

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if isinstance(loop, qasync.QEventLoop) and not loop.is_closed():
        return loop
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    logger.info("qasync event loop installed on %s", type(app).__name__)
    return loop


def spawn(
    coro: Coroutine[Any, Any, Any] | Awaitable[Any],
    *,
    on_error: Callable[[BaseException], None] | None = None,
    on_done: Callable[[Any], None] | None = None,
) -> asyncio.Future:
    """Schedule ``coro`` on the running qasync loop from a Qt slot.

    Keeps a strong reference so the task is not garbage collected mid-flight, and
    routes an exception to ``on_error`` (a dialog) instead of asyncio's "exception
    was never retrieved" log line.
    """
    # ensure_future, not the TaskSet's create_task: a slot may run before the loop does.
    future = _tasks.spawn(asyncio.ensure_future(_routed(coro, on_error, on_done)))
    if isinstance(coro, Coroutine):  # cancelled before it started: close it, never "never awaited"
        future.add_done_callback(lambda f: coro.close() if f.cancelled() else None)
    return future


async def _routed(coro: Awaitable[Any], on_error: Callable[[BaseException], None] | None, on_done: Callable[[Any], None] | None) -> None:
    """Await ``coro``, handing its result or error to the slot's callbacks; without
    ``on_error`` an error ends the task and the task set logs it."""
    try:
        result = await coro
    except Exception as exc:
        if on_error is None:
            raise
        on_error(exc)
        return
    if on_done is not None:
        on_done(result)


def pending_tasks() -> int:
    return len(_tasks)
