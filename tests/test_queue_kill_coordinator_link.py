"""The coordinator column of the kill -9 map (docs/queue.md), before training starts:
``sleap-rtc server`` as a subprocess (SQLite in tmp) killed with SIGKILL and started again
on the same port and database, a real worker subprocess, a real client over aiortc.

* ② killed right after the dispatch: the client cannot open the link (the offer goes
  through the coordinator); after the restart it tries the same attempt again, and the
  job runs once, on attempt 1.
* ③ killed while the package is on its way: the upload goes on over the peer link and is
  not sent again; the worker's ``running`` report is lost with the coordinator away, yet
  the restarted one does not requeue the job for want of an ``accepted`` (it used to, and
  the job trained twice); attempt 1 ends it.
"""

from __future__ import annotations

import asyncio

import pytest

from fixtures_data import sample_labels, sample_root, training_package  # noqa: F401
from fixtures_kill import (  # noqa: F401
    COORD_GRACE,
    COORD_LEASE,
    coordinator_process,
    is_state,
    padded_package,
    prepare_db,
    read_job,
    slow_transfers,
    spec_at,
    statuses,
    trained,
)
from fixtures_queue_e2e import drain, worker_process  # noqa: F401
from sleap_rtc_plugin.client.api import QueueOptions, submit_training

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


async def test_coordinator_killed_during_the_upload_the_upload_goes_on(
        coordinator_process, worker_process, training_package, slow_transfers, tmp_path):  # noqa: F811
    coord = coordinator_process(lease=COORD_LEASE, grace=COORD_GRACE)
    room, tokens = await prepare_db(coord.db, ["w-1"])
    await coord.start()
    worker_process("w-1", coord.url, (room[0], tokens["w-1"]))
    package = padded_package(training_package, tmp_path / "padded", 24)
    size = package.stat().st_size
    handle = submit_training(package, spec_at(coord.url, room), project_dir=tmp_path / "project", queue=QueueOptions())
    events: list = []

    def mid_upload(e) -> bool:
        return e.kind == "transfer" and e.data.get("direction") == "upload" and e.data["name"] == package.name and e.data["done"] >= size // 5

    await drain(handle, events, until=mid_upload)
    coord.kill9()
    assert not statuses(events, "transferred"), "the upload finished before the kill (the race this test needs was lost)"
    await drain(handle, events, until=is_state("transferred"))  # finishes with the coordinator down
    await asyncio.sleep(1.0)
    await coord.start()
    rest = asyncio.ensure_future(drain(handle, events))
    outcome = await handle.result()
    await rest

    sent = [e.data["done"] for e in events if e.kind == "transfer" and e.data.get("direction") == "upload" and e.data["name"] == package.name]
    assert sent == sorted(sent) and sent[-1] == size, "one upload, never restarted"
    record = await read_job(coord.db, handle.job_id)
    assert len(statuses(events, "transferred")) == 1
    assert [(d["worker"], d["attempt"]) for d in statuses(events, "dispatched")] == [("w-1", 1)]
    assert trained(events) == [0, 1] and len(outcome.model_dirs) == 1
    assert (record.state, record.attempt, record.retries) == ("succeeded", 1, 0)
    assert "did not accept the job" not in coord.output()


async def test_coordinator_killed_right_after_the_dispatch_the_job_still_runs_once(
        coordinator_process, worker_process, training_package, tmp_path):  # noqa: F811
    coord = coordinator_process(lease=COORD_LEASE, grace=COORD_GRACE)
    room, tokens = await prepare_db(coord.db, ["w-1"])
    await coord.start()
    worker_process("w-1", coord.url, (room[0], tokens["w-1"]))
    handle = submit_training(training_package, spec_at(coord.url, room), project_dir=tmp_path / "project", queue=QueueOptions())
    events: list = []
    await drain(handle, events, until=is_state("dispatched"))
    coord.kill9()
    before = await read_job(coord.db, handle.job_id)
    assert before is not None and (before.state, before.attempt) == ("dispatched", 1)
    await asyncio.sleep(1.0)
    await coord.start()
    rest = asyncio.ensure_future(drain(handle, events))
    outcome = await handle.result()
    await rest

    record = await read_job(coord.db, handle.job_id)
    # The client's first try at the link failed with the coordinator away; after the restart it
    # tries attempt 1 again at once instead of waiting for the worker to give the dispatch up.
    assert statuses(events, "waiting")
    assert [(d["worker"], d["attempt"]) for d in statuses(events, "dispatched")] == [("w-1", 1)]
    assert trained(events) == [0, 1] and len(outcome.model_dirs) == 1
    assert (record.state, record.attempt, record.retries) == ("succeeded", 1, 0)
