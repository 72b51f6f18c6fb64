"""The project's job list and event replay through the client API (issue 17 item 2).

A real coordinator, real in-process workers and real sleap-nn: every job submitted from
a project lands in its job list with kind, models, worker, state and times; results are
fetched once (a second ``fetch_job`` does nothing); a client that attaches to a running
job first gets the epochs so far, then live ones; a failed job keeps sleap-nn's last
log lines; ``run_again`` submits the same package again.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from fixtures_e2e import collect, coordinator, cpu_worker, first_epoch, make_worker, project, room, spec_for  # noqa: F401
from fixtures_data import sample_labels, sample_root, failing_training_package, training_package  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import RemoteError, attach, fetch_job, forget_job, list_jobs, run_again, submit_training
from sleap_rtc_plugin.client.handle_state import state_after_error, state_of
from sleap_rtc_plugin.client.jobs_store import JobList, JobRecord
from sleap_rtc_plugin.protocol import ProtocolError
from sleap_rtc_plugin.protocol.job_state import JobState


def _epoch_ends(events) -> list:
    return [e for e in events if e.kind == "progress" and e.data.get("event") == "epoch_end"]


# -- the list itself: plain files, hostile-proof ---------------------------------------------


def test_job_list_round_trips_and_ignores_damaged_entries(tmp_path):
    jobs = JobList(tmp_path)
    jobs.put(JobRecord("job-a", "train", models=["centroid"], submitted=1.0))
    jobs.put(JobRecord("job-b", "track", submitted=2.0))
    (jobs.dir / "job-c.json").write_text("{not json")
    (jobs.dir / "job-d.json").write_text(json.dumps({"job_id": "../../etc", "kind": "train"}))
    assert [r.job_id for r in jobs.all()] == ["job-b", "job-a"]  # newest first, damaged ones skipped
    assert jobs.update("job-a", state="running").state == "running"
    assert jobs.update("nope", state="running") is None
    with pytest.raises(ProtocolError):
        JobRecord.from_dict({"job_id": "x", "kind": "evil"})
    with pytest.raises(ProtocolError):
        jobs.get("../escape")
    jobs.remove("job-a")
    assert [r.job_id for r in jobs.all()] == ["job-b"]


def test_every_reported_word_maps_to_one_protocol_state():
    assert state_of("receiving", JobState.RUNNING) is JobState.SUCCEEDED
    assert state_of("connecting", JobState.QUEUED) is JobState.DISPATCHED
    assert state_of("no such word", JobState.RUNNING) is JobState.RUNNING
    assert state_after_error("connection_lost", JobState.RUNNING) is JobState.RUNNING  # it runs on remotely
    assert state_after_error("job_cancelled", JobState.RUNNING) is JobState.CANCELLED
    assert state_after_error("job_failed", JobState.RUNNING) is JobState.FAILED


# -- real jobs ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_job_is_listed_fetched_once_run_again_and_removed(cpu_worker, project, training_package):  # noqa: F811
    handle = submit_training(training_package, spec_for(cpu_worker), project_dir=project)
    await collect(handle)
    outcome = await handle.result()
    assert handle.state is JobState.ACKNOWLEDGED

    [record] = await list_jobs(project)
    assert (record.job_id, record.kind, record.state, record.fetched) == (handle.job_id, "train", "acknowledged", True)
    assert record.models == ["single_instance"] and record.worker_name == "cpu-worker" and record.worker_id == cpu_worker.peer_id
    assert record.finished is not None and record.finished >= record.submitted
    assert record.epoch == 2 and record.epochs in (2, None)
    assert record.files == [str(p) for p in outcome.files] and "room_secret" not in json.dumps(record.connection)
    assert Path(record.package).is_file() and Path(record.package).parent != training_package.parent  # kept for Run again

    assert fetch_job(handle.job_id, spec_for(cpu_worker), project_dir=project) is None  # a second fetch does nothing
    assert len(list((project / "models").iterdir())) == 1

    again = run_again(handle.job_id, spec_for(cpu_worker), project_dir=project)
    await collect(again)
    second = await again.result()
    assert again.job_id != handle.job_id and len(second.model_dirs) == 1
    assert {r.job_id for r in await list_jobs(project)} == {handle.job_id, again.job_id}

    await forget_job(handle.job_id, project_dir=project)
    assert [r.job_id for r in await list_jobs(project)] == [again.job_id]
    assert not Path(record.package).exists() and outcome.model_dirs[0].is_dir()  # results stay
    with pytest.raises(RemoteError) as info:
        fetch_job(handle.job_id, spec_for(cpu_worker), project_dir=project)
    assert info.value.code == "unknown_job"


@pytest.mark.slow
async def test_attach_replays_the_epochs_so_far_then_follows(cpu_worker, project, sample_labels, tmp_path):  # noqa: F811
    package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=40, steps_per_epoch=2)
    handle = submit_training(package, spec_for(cpu_worker), project_dir=project)
    seen = 0
    async for event in handle.events():
        seen += first_epoch(event)
        if seen == 3:
            break
    await handle.detach()
    assert (await handle.result()).detached
    [record] = await list_jobs(project)
    assert record.state == "running" and not record.fetched

    again = fetch_job(handle.job_id, spec_for(cpu_worker), project_dir=project)
    assert again is not None
    events = []
    async for event in again.events():
        events.append(event)
        if len([e for e in _epoch_ends(events) if not e.data.get("replayed")]) == 1:
            break
    replayed = [e for e in _epoch_ends(events) if e.data.get("replayed")]
    assert len(replayed) >= 3 and [e.data["epoch"] for e in replayed] == list(range(len(replayed)))
    live = [e for e in _epoch_ends(events) if not e.data.get("replayed")]
    assert live[0].data["epoch"] >= replayed[-1].data["epoch"]  # follows on where the replay stopped
    assert any(e.kind == "status" and e.data.get("state") == "running" and e.data.get("log_tail") for e in events)

    await again.stop_early()
    await collect(again)
    outcome = await again.result()
    assert len(outcome.model_dirs) == 1
    [record] = await list_jobs(project)
    assert record.fetched and record.state == "acknowledged"
    assert fetch_job(handle.job_id, spec_for(cpu_worker), project_dir=project) is None



@pytest.mark.slow
async def test_a_failed_job_keeps_the_workers_last_log_lines(cpu_worker, project, sample_labels, tmp_path):  # noqa: F811
    handle = submit_training(failing_training_package(sample_labels, tmp_path), spec_for(cpu_worker), project_dir=project)
    await collect(handle)
    with pytest.raises(RemoteError) as info:
        await handle.result()
    assert info.value.code == "job_failed" and handle.state is JobState.FAILED
    [record] = await list_jobs(project)
    assert record.state == "failed" and record.error_code == "job_failed" and not record.fetched
    assert record.log_tail and "optimizer_name" in "\n".join(record.log_tail)
