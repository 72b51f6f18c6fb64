"""util.tasks (one owner for every background task) and util.clock (leases without sleeping)."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from sleap_rtc_plugin.util.clock import ManualClock
from sleap_rtc_plugin.util.tasks import TaskSet, spawn


async def test_a_failing_task_is_logged_once_by_its_owner(caplog):
    tasks = TaskSet(logging.getLogger("owner"), "owner")

    async def boom() -> None:
        raise RuntimeError("bad frame")

    task = tasks.spawn(boom(), name="boom")
    del task
    gc.collect()  # the set, not the caller, keeps the task alive
    with caplog.at_level(logging.ERROR, logger="owner"):
        await tasks.wait()
    failed = [r for r in caplog.records if r.name == "owner"]
    assert len(failed) == 1 and "boom failed" in failed[0].getMessage() and failed[0].exc_info[1].args == ("bad frame",)
    assert len(tasks) == 0


async def test_aclose_cancels_what_is_still_running():
    tasks = TaskSet()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = tasks.spawn(forever())
    await started.wait()
    await tasks.aclose()
    assert task.cancelled() and len(tasks) == 0


async def test_spawn_without_an_owner_keeps_the_task_until_it_ends():
    done = asyncio.Event()

    async def work() -> None:
        await asyncio.sleep(0.01)
        done.set()

    spawn(work())
    gc.collect()
    await asyncio.wait_for(done.wait(), 5)


def test_manual_clock_moves_only_forward_and_only_when_told():
    clock = ManualClock()
    wall, mono = clock.time(), clock.monotonic()
    assert (clock.time(), clock.monotonic()) == (wall, mono)
    clock.advance(90.0)
    assert (clock.time() - wall, clock.monotonic() - mono) == (90.0, 90.0)
    with pytest.raises(ValueError):
        clock.advance(-1)
