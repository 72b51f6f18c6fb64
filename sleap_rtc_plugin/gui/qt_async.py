"""asyncio inside Qt's event loop (qasync), and a safe way to start coroutines from slots.

Dialogs never block: a slot calls :func:`spawn`, the coroutine runs on the one
loop that Qt also drives, and results come back through callbacks or Qt signals.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Coroutine

logger = logging.getLogger(__name__)

_tasks: set[asyncio.Future] = set()


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
    future = asyncio.ensure_future(coro)
    _tasks.add(future)

    def _finished(fut: asyncio.Future) -> None:
        _tasks.discard(fut)
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            if on_error is not None:
                on_error(exc)
            else:
                logger.error("background task failed: %s", exc, exc_info=exc)
        elif on_done is not None:
            on_done(fut.result())

    future.add_done_callback(_finished)
    return future


def pending_tasks() -> int:
    return len(_tasks)
