"""The status machine: one place, no 'available' while a process runs."""

from __future__ import annotations

import asyncio

import pytest

from sleap_rtc_plugin.worker.state import InvalidTransition, Status, WorkerBusy, WorkerState


class _Job:
    """A job whose process lives until ``exit`` is set (the runner's contract)."""

    def __init__(self, job_id="job-7"):
        self.job_id = job_id
        self.exit = asyncio.Event()
        self.running = False
        self.epoch = 3

    def describe(self):
        return f"epoch {self.epoch}/10"

    async def run(self):
        self.running = True
        try:
            await self.exit.wait()
        finally:
            self.running = False
        return "done"


def test_happy_path_and_observers():
    seen = []
    state = WorkerState("gpu-box")
    state.add_observer(seen.append)
    state.reserve("client-a")
    job = _Job()
    state.start(job, "train", client_id="client-a")
    job.running = True
    with pytest.raises(InvalidTransition, match="still has a running process"):
        state.finish()
    assert state.status is Status.BUSY
    job.running = False
    state.finish()
    assert [s.status for s in seen] == [Status.RESERVED, Status.BUSY, Status.AVAILABLE]
    assert seen[1].job_id == "job-7" and seen[1].progress == "epoch 3/10" and seen[1].client_id == "client-a"
    assert seen[2].as_dict()["status"] == "available" and seen[2].job_id is None


def test_reserve_busy_worker_says_what_to_do():
    state = WorkerState("gpu-box")
    state.reserve("a")
    with pytest.raises(WorkerBusy, match=r"^worker gpu-box is reserved by another client; pick another worker or use --queue$"):
        state.reserve("b")
    state.start(_Job(), "train", client_id="a")
    with pytest.raises(WorkerBusy) as err:
        state.reserve("b")
    assert str(err.value) == "worker gpu-box is busy training job job-7 (epoch 3/10); pick another worker or use --queue"


@pytest.mark.parametrize(
    "steps, bad",
    [
        ([], "start"),
        ([], "finish"),
        ([], "unreserve"),
        (["reserve"], "finish"),
        (["reserve", "start"], "unreserve"),
    ],
)
def test_invalid_transitions(steps, bad):
    state = WorkerState("w")
    actions = {
        "reserve": lambda: state.reserve("a"),
        "start": lambda: state.start(_Job(), "train", client_id="a"),
        "finish": state.finish,
        "unreserve": lambda: state.unreserve("a"),
    }
    for step in steps:
        actions[step]()
    before = state.status
    with pytest.raises(InvalidTransition):
        actions[bad]()
    assert state.status is before


def test_only_the_reserving_client_may_start_or_unreserve():
    state = WorkerState("w")
    state.reserve("a")
    with pytest.raises(InvalidTransition, match="did not reserve"):
        state.start(_Job(), "train", client_id="b")
    with pytest.raises(InvalidTransition, match="does not hold"):
        state.unreserve("b")
    state.unreserve("a")
    assert state.status is Status.AVAILABLE


def test_failing_observer_does_not_break_transitions():
    state = WorkerState("w")
    state.add_observer(lambda s: 1 / 0)
    state.reserve("a")
    assert state.status is Status.RESERVED


async def test_run_releases_only_after_the_job_returns():
    seen = []
    state = WorkerState("w")
    job = _Job()
    state.add_observer(lambda s: seen.append((s.status, job.running)))
    state.reserve("a")
    state.start(job, "train", client_id="a")  # what JobSession does: start, await the engine, then finish
    task = asyncio.create_task(job.run())
    await asyncio.sleep(0.05)
    assert state.status is Status.BUSY and job.running
    with pytest.raises(InvalidTransition):
        state.finish()  # the process still runs
    job.exit.set()
    assert await task == "done"
    state.finish()
    assert state.status is Status.AVAILABLE
    assert all(not running for status, running in seen if status is Status.AVAILABLE)


async def test_run_releases_after_a_failed_job():
    class Boom(_Job):
        async def run(self):
            raise RuntimeError("sleap-nn exited with code 1")

    state = WorkerState("w")
    state.reserve("a")
    job = Boom()
    state.start(job, "track", client_id="a")
    with pytest.raises(RuntimeError):
        try:
            await job.run()
        finally:
            state.finish()
    assert state.status is Status.AVAILABLE
