"""One policy for background tasks: every task has an owner that keeps a reference.

asyncio holds only a weak reference to a task, so a bare ``ensure_future(coro)`` can
be garbage-collected mid-flight, and an exception in it surfaces (if at all) as
"Task exception was never retrieved" at interpreter exit. A :class:`TaskSet` keeps
each task until it ends, logs its exception once with the owner's logger, and
cancels what is left when its owner closes. :func:`spawn` is the same for work with
no natural owner (a process-wide set).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar, overload

T = TypeVar("T")

_log = logging.getLogger(__name__)


class TaskSet:
    """Tasks owned by one object: referenced until done, exceptions logged, cancelled on close."""

    def __init__(self, logger: logging.Logger | None = None, name: str = "") -> None:
        self._log = logger or _log
        self._name = name
        self._tasks: set[asyncio.Future[Any]] = set()

    @overload
    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]: ...

    @overload
    def spawn(self, coro: Awaitable[T], *, name: str | None = None) -> asyncio.Future[T]: ...

    def spawn(self, coro: Awaitable[T], *, name: str | None = None) -> asyncio.Future[T]:
        """Start ``coro`` (a coroutine, or any awaitable) as a task this set keeps until it ends."""
        if isinstance(coro, Coroutine):
            task: asyncio.Future[T] = asyncio.get_running_loop().create_task(coro, name=name)
        else:
            task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            where = f"{self._name}: " if self._name else ""
            name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
            self._log.error("%sbackground task %s failed", where, name, exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Wait until every task spawned so far has ended (exceptions are logged, not raised)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self) -> None:
        """Cancel every task still running and wait for them to end."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


_GLOBAL = TaskSet(_log, "detached")


@overload
def spawn(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]: ...


@overload
def spawn(coro: Awaitable[T], *, name: str | None = None) -> asyncio.Future[T]: ...


def spawn(coro: Awaitable[T], *, name: str | None = None) -> asyncio.Future[T]:
    """Start ``coro`` with no owner object: kept referenced and its exception logged."""
    return _GLOBAL.spawn(coro, name=name)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait for it to end, swallowing its cancellation."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
