"""``gui.qt_async.spawn``: what a Qt slot starts is kept, and its outcome reaches the slot's
callbacks (or the log), under the project's one task policy (util/tasks.py)."""

from __future__ import annotations

import asyncio
import gc
import logging

from sleap_rtc_plugin.gui.qt_async import pending_tasks, spawn


async def _settle(future: asyncio.Future) -> None:
    await asyncio.wait({future})
    await asyncio.sleep(0)  # the task set's done callback


async def test_result_and_error_reach_the_callbacks_and_the_task_is_let_go():
    done: list = []
    errors: list = []

    async def ok() -> int:
        await asyncio.sleep(0)
        return 5

    async def bad() -> None:
        raise ValueError("boom")

    before = pending_tasks()
    first, second = spawn(ok(), on_done=done.append), spawn(bad(), on_error=errors.append)
    assert pending_tasks() == before + 2
    await _settle(first)
    await _settle(second)
    assert done == [5] and [str(e) for e in errors] == ["boom"]
    assert pending_tasks() == before


async def test_an_error_nobody_handles_is_logged_once(caplog):
    async def bad() -> None:
        raise ValueError("nobody listens")

    with caplog.at_level(logging.ERROR):
        await _settle(spawn(bad()))
    assert [r for r in caplog.records if r.exc_info and "nobody listens" in str(r.exc_info[1])], caplog.text


async def test_cancelled_before_it_starts_leaves_no_unawaited_coroutine(recwarn):
    started: list = []

    async def job() -> None:
        started.append(True)

    future = spawn(job())
    future.cancel()
    await _settle(future)
    assert not started and future.cancelled()
    del future  # its stored cancellation holds the frames that hold the coroutine
    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]
