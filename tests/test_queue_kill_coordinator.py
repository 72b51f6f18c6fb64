"""The coordinator column of the kill -9 map (docs/queue.md): ``sleap-rtc server`` as a
subprocess with its SQLite file in tmp, killed with SIGKILL (no clean stop, no last
write) and started again on the same port and database. A real worker subprocess runs
real sleap-nn on CPU; the client is real, over aiortc.

* ④ killed while a job runs: training goes on (the peer link does not pass through the
  coordinator); after the restart the job has one fresh lease, the worker's reports and
  the client's confirmation get through, and the job ends ``succeeded`` on attempt 1 with
  no retry and one model. Two jobs queued behind it (①) keep their places.
* ⑥ killed right after ``results_ready`` (the worker's ``succeeded`` is committed, the
  client is fetching the model): nothing is requeued or retrained; the client's
  ``results_received`` arrives after the restart and ends the job.
"""

from __future__ import annotations

import asyncio

import pytest

from fixtures_data import sample_labels, sample_root, training_package  # noqa: F401
from fixtures_kill import COORD_GRACE, COORD_LEASE, coordinator_process, is_state, prepare_db, read_job, spec_at, statuses, trained  # noqa: F401
from fixtures_queue_e2e import drain, worker_process  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import QueueOptions, RemoteError, submit_training

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

LEASE, GRACE = COORD_LEASE, COORD_GRACE


async def test_coordinator_killed_while_a_job_runs_the_job_ends_on_its_first_attempt(
        coordinator_process, worker_process, sample_labels, training_package, tmp_path):  # noqa: F811
    coord = coordinator_process(lease=LEASE, grace=GRACE)
    room, tokens = await prepare_db(coord.db, ["w-1"])
    await coord.start()
    worker = worker_process("w-1", coord.url, (room[0], tokens["w-1"]))
    spec = spec_at(coord.url, room)
    package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=6)
    handle = submit_training(package, spec, project_dir=tmp_path / "project", queue=QueueOptions())
    events: list = []
    await drain(handle, events, until=is_state("dispatched"))
    # Two jobs behind it, for a pool no worker is in yet: they wait, in order.
    waiting, waiting_events = [], []
    for i in range(2):  # one after the other: their order is their submit order
        waiting.append(submit_training(training_package, spec, project_dir=tmp_path / f"waiting-{i}", queue=QueueOptions(labels={"pool": "later"})))
        waiting_events.append([])
        await drain(waiting[-1], waiting_events[-1], until=is_state("queued"))
    assert [ev[-1].data["position"] for ev in waiting_events] == [0, 1]

    await drain(handle, events, until=lambda e: e.kind == "progress" and e.data.get("event") == "epoch_end")
    coord.kill9()
    before = await read_job(coord.db, handle.job_id)
    assert before is not None and (before.state, before.attempt) == ("running", 1)
    seen = [len(ev) for ev in waiting_events]
    await asyncio.sleep(1.0)
    await coord.start()

    # After the restart each waiting client reads its job again (queue_watch): same place.
    for h, ev, n in zip(waiting, waiting_events, seen):
        await drain(h, ev, until=lambda e, ev=ev, n=n: len(ev) > n and is_state("queued")(e))
    assert [ev[-1].data["position"] for ev in waiting_events] == [0, 1]
    rest = asyncio.ensure_future(drain(handle, events))
    outcome = await handle.result()
    await rest

    assert [(d["worker"], d["attempt"]) for d in statuses(events, "dispatched")] == [("w-1", 1)]
    assert trained(events) == list(range(6)), "training ran through the outage; nothing restarted"
    assert outcome.worker_id == "w-1" and len(outcome.model_dirs) == 1 and (outcome.model_dirs[0] / "best.ckpt").stat().st_size > 0
    assert len([e for e in events if e.kind == "result"]) == 1
    record = await read_job(coord.db, handle.job_id)
    assert (record.state, record.attempt, record.retries, record.worker_id) == ("succeeded", 1, 0, "w-1")
    for h in waiting:
        record = await read_job(coord.db, h.job_id)
        assert (record.state, record.attempt, record.retries) == ("queued", 0, 0)
    for h in waiting:
        await h.cancel()
        await drain(h, [])
        with pytest.raises(RemoteError):
            await h.result()
    assert "restarted without the job" not in coord.output() and worker.proc.poll() is None


async def test_coordinator_killed_right_after_results_ready_nothing_is_retrained(
        coordinator_process, worker_process, training_package, tmp_path):  # noqa: F811
    coord = coordinator_process(lease=LEASE, grace=GRACE)
    room, tokens = await prepare_db(coord.db, ["w-1"])
    await coord.start()
    worker = worker_process("w-1", coord.url, (room[0], tokens["w-1"]))
    project = tmp_path / "project"
    handle = submit_training(training_package, spec_at(coord.url, room), project_dir=project, queue=QueueOptions())
    events: list = []
    # The worker says succeeded on the link only once the coordinator has taken its report.
    await drain(handle, events, until=is_state("succeeded"))
    coord.kill9()
    before = await read_job(coord.db, handle.job_id)
    assert before is not None and before.state == "results_ready", f"{before.state}: the client confirmed before the kill (race lost)"
    await asyncio.sleep(1.0)
    await coord.start()
    rest = asyncio.ensure_future(drain(handle, events))
    outcome = await handle.result()
    await rest

    assert [(d["worker"], d["attempt"]) for d in statuses(events, "dispatched")] == [("w-1", 1)]
    assert trained(events) == [0, 1]
    (model_dir,) = outcome.model_dirs
    assert [p.name for p in (project / "models").iterdir()] == [model_dir.name]
    record = None
    async with asyncio.timeout(30):  # the confirmation may still be on its way when result() returns
        while record is None or record.state != "succeeded":
            record = await read_job(coord.db, handle.job_id)
            await asyncio.sleep(0.2)
    assert (record.attempt, record.retries, record.worker_id) == (1, 0, "w-1")
    assert worker.proc.poll() is None

