"""The job queue end to end: a real coordinator, real workers running real sleap-nn on
CPU, real clients over aiortc.

What a user of ``client-train --queue`` relies on: the client sees its place in line
and is connected to whichever matching worker gets the job; the job survives a
coordinator restart; a worker killed mid-training loses the job to another worker,
which resumes from the checkpoint the client holds, and the model arrives once; a
network blip shorter than the grace costs nothing; a job that fails by its own error
is not retried.
"""

from __future__ import annotations

import asyncio
import os
import sys
import zipfile

import pytest

from fixtures_data import sample_labels, sample_root, training_package  # noqa: F401
from fixtures_queue import eventually, use_manual_clock
from fixtures_queue_e2e import (  # noqa: F401
    GRACE,
    LEASE,
    SECRET,
    BlipProxy,
    client_spec,
    drain,
    enroll,
    qcoord,
    qroom,
    qworker,
    split_by_attempt,
    worker_peer,
    start_coordinator,
    worker_process,
)
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import QueueOptions, RemoteError, submit_training
from sleap_rtc_plugin.client.checkpoints import CheckpointStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def epochs_of(events, attempt_worker: str | None = None) -> list[int]:
    return [e.data["epoch"] for e in events if e.kind == "progress" and e.data.get("event") == "epoch_end"]


def statuses(events, state: str) -> list[dict]:
    return [e.data for e in events if e.kind == "status" and e.data.get("state") == state]


async def test_queue_position_requirements_and_checkpoint_relay(qcoord, qroom, qworker, sample_labels, tmp_path):  # noqa: F811
    lab = await qworker("w-lab", labels={"site": "lab-2"})
    await qworker("w-home", labels={"site": "home"})
    package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=4)
    want = QueueOptions(labels={"site": "lab-*"})

    first = submit_training(package, client_spec(qcoord.url, qroom), project_dir=tmp_path / "p1", queue=want)
    first_events: list = []
    await drain(first, first_events, until=lambda e: e.kind == "progress" and e.data.get("event") == "epoch_end")

    second = submit_training(package, client_spec(qcoord.url, qroom), project_dir=tmp_path / "p2", queue=want)
    second_events: list = []
    # Only w-lab matches and it is busy: the second job waits first in line.
    await drain(second, second_events, until=lambda e: e.kind == "status" and e.data.get("state") == "queued")
    assert second_events[-1].data["position"] == 0

    rest = asyncio.ensure_future(drain(first, first_events))
    outcome = await first.result()
    await rest
    await drain(second, second_events)
    outcome2 = await second.result()

    for o, project in ((outcome, tmp_path / "p1"), (outcome2, tmp_path / "p2")):
        assert o.worker_id == lab.peer_id
        assert len(o.model_dirs) == 1 and (o.model_dirs[0] / "best.ckpt").stat().st_size > 0
        assert o.model_dirs[0].parent == project / "models"
    assert [d["worker"] for d in statuses(second_events, "dispatched")] == [lab.peer_id]
    # The worker relayed checkpoints while training; the client kept the newest atomically.
    kept = [e.data for e in first_events if e.kind == "checkpoint"]
    assert kept and kept[-1]["model"] == "single_instance" and kept[-1]["attempt"] == 1
    latest = CheckpointStore(tmp_path / "p1" / ".sleap-rtc" / "checkpoints", first.job_id).latest()
    assert latest is not None and latest.epoch == kept[-1]["epoch"]
    record = await qcoord.jobstore.get_job(first.job_id)
    assert (record.state, record.attempt, record.worker_id) == ("succeeded", 1, lab.peer_id)
    assert record.checkpoint and record.checkpoint["sha256"] == latest.sha256





async def test_killed_worker_requeues_and_resumes_from_the_relayed_checkpoint(qcoord, qroom, worker_process, sample_labels, tmp_path):  # noqa: F811
    clock = use_manual_clock(qcoord)  # the lease runs out when the test says, not after seconds of waiting
    first = worker_process("w-first", qcoord.url, (qroom[0], await enroll(qcoord, qroom[0], "w-first")), checkpoint_interval=0.5)
    first_id = await worker_peer(qcoord, qroom[0], "w-first")
    package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=10)
    project = tmp_path / "project"
    handle = submit_training(package, client_spec(qcoord.url, qroom), project_dir=project, queue=QueueOptions())
    events: list = []
    await drain(handle, events, until=lambda e: e.kind == "status" and e.data.get("state") == "dispatched")
    assert events[-1].data["worker"] == first_id
    second = worker_process("w-second", qcoord.url, (qroom[0], await enroll(qcoord, qroom[0], "w-second")), checkpoint_interval=0.5)

    # Kill -9 the first worker (and its sleap-nn) as soon as the client holds a checkpoint.
    kept = await drain(handle, events, until=lambda e: e.kind == "checkpoint")
    assert kept is not None and kept.data["attempt"] == 1
    first.kill9()
    second_id = await worker_peer(qcoord, qroom[0], "w-second")
    # Every frame the killed worker sent has been read once its connection is gone: then
    # nothing renews the lease, and it runs out (plus the grace) in one step.
    await eventually(lambda: qcoord.presence.get(qroom[0], first_id) is None, timeout=60)
    clock.advance(LEASE + GRACE + 0.5)

    await drain(handle, events)
    outcome = await handle.result()

    by_attempt = split_by_attempt(events)
    assert sorted(k for k in by_attempt if k) == [1, 2]
    assert [d["worker"] for d in statuses(events, "dispatched")] == [first_id, second_id]
    assert statuses(by_attempt[2], "resuming"), "the client handed its checkpoint to the new worker"
    # The checkpoint handed over is the newest one the client kept before the kill.
    handed = max((e.data for e in by_attempt[1] if e.kind == "checkpoint"), key=lambda d: d["epoch"])
    resumed_epochs = epochs_of(by_attempt[2])
    assert resumed_epochs and resumed_epochs[0] == handed["epoch"] + 1 > 0, (handed, resumed_epochs)
    assert resumed_epochs[-1] == 9
    assert "resuming single_instance from the relayed checkpoint" in second.output()

    # The final model arrived once, from the second worker.
    assert outcome.worker_id == second_id
    assert len(outcome.model_dirs) == 1 and (outcome.model_dirs[0] / "best.ckpt").stat().st_size > 0
    assert [p.name for p in (project / "models").iterdir()] == [outcome.model_dirs[0].name]
    assert len([e for e in events if e.kind == "result"]) == 1
    record = await qcoord.jobstore.get_job(handle.job_id)
    assert (record.state, record.attempt, record.retries, record.worker_id) == ("succeeded", 2, 1, second_id)
    requeued = [d for d in statuses(by_attempt[1], "queued") if "silent" in d.get("message", "")]
    assert requeued, "the coordinator requeued the job because the killed worker went silent"


async def test_blip_longer_than_the_lease_but_shorter_than_the_grace_keeps_the_job(qroom, qcoord, qworker, sample_labels, tmp_path):  # noqa: F811
    # Lease 3 s + grace 4 s (fixtures_queue_e2e): a 5 s outage outlives the lease, not the grace.
    # The coordinator lives those 5 s on a manual clock; the disconnection itself is real.
    clock = use_manual_clock(qcoord)
    proxy = BlipProxy(qcoord.port)
    await proxy.start()
    try:
        worker = await qworker("w-blip", url=proxy.url)
        package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=8)
        handle = submit_training(package, client_spec(qcoord.url, qroom), project_dir=tmp_path / "project", queue=QueueOptions())
        events: list = []
        await drain(handle, events, until=lambda e: e.kind == "progress" and e.data.get("event") == "epoch_end")
        proxy.cut()
        await eventually(lambda: not worker.coordinator.connected and qcoord.presence.get(qroom[0], worker.peer_id) is None, timeout=30)
        clock.advance(5.0)
        await qcoord.queue.tick()
        job = qcoord.queue.jobs[handle.job_id]
        assert (job.state, job.attempt, job.worker_id) == ("running", 1, worker.peer_id), "past the lease, within the grace: kept"
        proxy.restore()
        await drain(handle, events)
        outcome = await handle.result()
    finally:
        await proxy.close()

    assert worker.coordinator.reconnects >= 1 and proxy.connections >= 2
    assert outcome.worker_id == worker.peer_id and len(outcome.model_dirs) == 1
    assert [(d["worker"], d["attempt"]) for d in statuses(events, "dispatched")] == [(worker.peer_id, 1)]
    assert not [d for d in statuses(events, "queued") if "requeued" in d.get("message", "")]
    assert epochs_of(events) == list(range(8)), "training ran through the blip, nothing was restarted"
    record = await qcoord.jobstore.get_job(handle.job_id)
    assert (record.state, record.attempt, record.retries) == ("succeeded", 1, 0)


async def test_jobs_survive_a_coordinator_restart(tmp_path, training_package):  # noqa: F811
    db = tmp_path / "coordinator.sqlite3"
    server = await start_coordinator(db)
    port = server.port
    room = (await server.create_room())[:2]
    handle = submit_training(training_package, client_spec(server.url, room), project_dir=tmp_path / "project",
                             queue=QueueOptions(labels={"pool": "night*"}))
    events: list = []
    await drain(handle, events, until=lambda e: e.kind == "status" and e.data.get("state") == "queued")
    assert events[-1].data["position"] == 0  # no worker matches yet

    await server.stop()
    server = await start_coordinator(db, port)
    worker = None
    try:
        assert [j.job_id for j in server.queue.jobs.values()] == [handle.job_id]
        from sleap_rtc_plugin.worker.agent import Worker, WorkerOptions

        worker = Worker(WorkerOptions(server_url=server.url, room_id=room[0], token=await enroll(server, room[0], "w-night"), room_secret=client_spec(server.url, room).room_secret,
                                      name="w-night", labels={"pool": "night-1"}, data_dir=tmp_path / "worker", status_port=0,
                                      ice_loopback=True, checkpoint_interval=0.5))
        await worker.start()
        await drain(handle, events)
        outcome = await handle.result()
        assert outcome.worker_id == worker.peer_id and (outcome.model_dirs[0] / "best.ckpt").is_file()
        record = await server.jobstore.get_job(handle.job_id)
        assert (record.state, record.attempt) == ("succeeded", 1)
    finally:
        if worker is not None:
            await worker.stop()
        await server.stop()


def broken_package(package, out):
    """The same job with a model config sleap-nn refuses: it exits non-zero on any worker."""
    import yaml

    with zipfile.ZipFile(package) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith(".yaml") and item.filename != "jobs.yaml":
                cfg = yaml.safe_load(data)
                cfg["model_config"]["backbone_config"] = {"unet": None, "convnext": None, "swint": None}
                data = yaml.safe_dump(cfg).encode()
            zout.writestr(item, data)
    return out


async def test_cli_queue_a_job_failing_by_its_own_error_is_not_retried(qcoord, qroom, qworker, training_package, tmp_path):  # noqa: F811
    """``sleap-rtc client-train --queue`` as a user runs it (a separate process)."""
    matching = await qworker("w-a", labels={"site": "lab-2"})
    other = await qworker("w-b", labels={"site": "lab-3"})
    package = broken_package(training_package, tmp_path / "broken.slp.training_job.zip")
    env = {**os.environ, "SLEAP_RTC_ICE_LOOPBACK": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sleap_rtc_plugin", "client-train", "--server", qcoord.url, "--room-id", qroom[0], "--token", qroom[1],
        "--room-secret", SECRET, "--pkg-path", str(package), "--project-dir", str(tmp_path / "project"), "--no-progress",
        "--queue", "--label", "site=lab-[2]", "--priority", "5", "--gpus", "0", "--max-retries", "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    text = out.decode(errors="replace")
    assert proc.returncode != 0, text
    assert "[queued] queued as job" in text and "position 0" in text
    assert "exited with code" in text and "BackboneConfig" in text, text

    (record,) = await qcoord.jobstore.list_jobs(room_id=qroom[0])
    assert (record.state, record.attempt, record.retries, record.failure, record.priority) == ("failed", 1, 0, "job", 5)
    assert record.worker_id == matching.peer_id and record.requirements["labels"] == {"site": "lab-[2]"}
    assert {matching.state.status.value, other.state.status.value} == {"available"}
    assert not (other.data_dir / "jobs").exists() or not any((other.data_dir / "jobs").iterdir())
