"""Failure and recovery through the Slurm executor on a real single-node Slurm cluster.

A queued job whose Slurm job is killed by its time limit (Slurm's own TIMEOUT, the
limit shrunk on the running job with ``scontrol update``) is the cluster's failure:
the coordinator requeues it and the next attempt resumes from the relayed checkpoint.
A worker that stops while its Slurm job trains leaves the job running; the worker's
next start adopts it and the client, attaching again, gets the model.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from fixtures_data import sample_labels, sample_root  # noqa: F401
from fixtures_e2e import collect, coordinator, first_epoch, make_worker, project, room, spec_for  # noqa: F401
from fixtures_queue_e2e import SECRET, client_spec, drain, enroll, qcoord, qroom, split_by_attempt  # noqa: F401
from fixtures_slurm import slurm_cluster  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import QueueOptions, attach, submit_training
from sleap_rtc_plugin.worker.agent import Worker, WorkerOptions
from sleap_rtc_plugin.worker.slurm.execution import SlurmExecutorFactory
from test_slurm_jobs import slurm_options, until_no_jobs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def epochs(events) -> list[int]:
    return [e.data["epoch"] for e in events if e.kind == "progress" and e.data.get("event") == "epoch_end"]


async def test_a_job_killed_by_the_time_limit_is_requeued_and_resumes(qcoord, qroom, slurm_cluster, sample_labels, tmp_path):  # noqa: F811
    factory = SlurmExecutorFactory(slurm_options(slurm_cluster, tmp_path / "staging"))
    worker = Worker(WorkerOptions(
        server_url=qcoord.url, room_id=qroom[0], token=await enroll(qcoord, qroom[0], "hpc"), room_secret=SECRET, name="hpc",
        data_dir=tmp_path / "worker", status_port=0, ice_loopback=True, cancel_grace=5.0, checkpoint_interval=0.5,
        executor_factory=factory,
    ))
    await worker.start()
    try:
        # More epochs than any machine trains before the shrunk limit strikes (a minute,
        # checked by slurmctld every ~30 s); attempt 2 is ended with Stop Early instead.
        package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=100_000, steps_per_epoch=5)
        handle = submit_training(package, client_spec(qcoord.url, qroom), project_dir=tmp_path / "project", queue=QueueOptions())
        events: list = []
        kept = await drain(handle, events, until=lambda e: e.kind == "checkpoint")
        assert kept is not None and kept.data["attempt"] == 1
        slurm_id = (await asyncio.to_thread(slurm_cluster.jobs))[0]
        # The job has run past one minute of its limit as far as Slurm is concerned: TIMEOUT at the next check.
        await asyncio.to_thread(slurm_cluster.run, "scontrol", "update", f"JobId={slurm_id}", "TimeLimit=0:1")
        await drain(handle, events, until=lambda e: split_by_attempt(events).keys() > {0, 1} and len(epochs(split_by_attempt(events)[2])) >= 2)
        await handle.stop_early()
        await drain(handle, events)
        outcome = await handle.result()
        sbatch_lines = [p.read_text().splitlines()[-1][-300:] for p in (tmp_path / "staging").glob("*/slurm/*/job.sbatch")]
    finally:
        await worker.stop()

    by_attempt = split_by_attempt(events)
    assert sorted(k for k in by_attempt if k) == [1, 2]
    failed = [e.data for e in by_attempt[1] if e.kind == "status" and e.data.get("state") == "queued"]
    assert failed and any("TIMEOUT" in d.get("message", "") for d in failed), failed
    # Attempt 2 resumes from the last checkpoint relayed. Its epoch label comes from the progress lines, read
    # from the shared filesystem apart from the checkpoint file: a checkpoint can be relayed before its epoch's
    # line is read (epoch None), copied after sleap-nn rewrote it for a later epoch, or labelled after the next
    # epoch's line arrived. So the label is right within one epoch, and the last epoch attempt 1 reached (+1: a
    # checkpoint can land just before its line) bounds it from above.
    relayed = [e.data.get("epoch") for e in by_attempt[1] if e.kind == "checkpoint"]
    last_labeled = max(epoch for epoch in relayed if epoch is not None)
    trained = epochs(by_attempt[1])
    resumed = epochs(by_attempt[2])
    # Attempt 2 trains from the epoch after that checkpoint, one epoch after another, until Stop Early.
    assert len(resumed) >= 2 and last_labeled <= resumed[0] <= max(trained) + 2, (
        relayed[-5:], trained[-3:], resumed, [e.data for e in by_attempt[2] if e.kind == "status"], sbatch_lines)
    assert resumed == list(range(resumed[0], resumed[0] + len(resumed))), resumed
    assert (outcome.model_dirs[0] / "best.ckpt").stat().st_size > 0
    record = await qcoord.jobstore.get_job(handle.job_id)
    assert (record.state, record.attempt, record.retries) == ("succeeded", 2, 1)
    assert await until_no_jobs(slurm_cluster) == []


async def test_a_restarted_worker_adopts_its_running_slurm_job_and_delivers_the_model(
        make_worker, slurm_cluster, project, sample_labels, tmp_path):  # noqa: F811
    opts = slurm_options(slurm_cluster, tmp_path / "staging")
    data_dir = tmp_path / "worker-data"
    first = await make_worker("hpc", data_dir=data_dir, executor_factory=SlurmExecutorFactory(opts))
    package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=8, steps_per_epoch=5)
    handle = submit_training(package, spec_for(first), project_dir=project)
    await collect(handle, until=first_epoch)
    await handle.detach()
    await handle.result()
    slurm_jobs = await asyncio.to_thread(slurm_cluster.jobs)
    assert len(slurm_jobs) == 1

    await first.stop()  # a service restart: the Slurm job is not the worker's child and keeps training
    assert await asyncio.to_thread(slurm_cluster.jobs) == slurm_jobs

    second = await make_worker("hpc", data_dir=data_dir, executor_factory=SlurmExecutorFactory(dataclasses.replace(opts)))
    assert second.job is not None and second.job.job_id == handle.job_id
    again = attach(handle.job_id, spec_for(second), project_dir=project)
    events = await collect(again)
    fetched = await again.result()
    assert len(fetched.model_dirs) == 1 and (fetched.model_dirs[0] / "best.ckpt").is_file()
    assert 7 in epochs(events)  # the adopted job's progress reached the client
    assert await until_no_jobs(slurm_cluster) == []
    assert second.state.status.value == "available"
