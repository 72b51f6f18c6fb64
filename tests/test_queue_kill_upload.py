"""Point ③ of the kill -9 map (docs/queue.md): a queued training job's package is on its
way to the worker when a process dies. Real coordinator, real workers and clients (as
subprocesses where they are killed), real sleap-nn on CPU; the upload goes over the plain
data channel and carries a padding file, so it lasts long enough to be cut.

* The worker is killed mid-upload: the job is requeued (lease + grace), a second worker
  gets the whole package again from the client and trains it; one model arrives. The
  killed worker keeps its partial copy for a resume (swept after ``PARTIAL_MAX_AGE``) and
  clears the job's incoming folder when it starts again.
* The client is killed mid-upload: the job is not lost; ``client-train --attach JOB
  --queue --pkg-path PKG`` takes it back, and the worker resumes the upload from the
  partial copy it kept instead of starting over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import pytest

from fixtures_data import sample_labels, sample_root, training_package  # noqa: F401
from fixtures_kill import padded_package, slow_transfers  # noqa: F401
from fixtures_queue_e2e import (  # noqa: F401
    SECRET,
    client_spec,
    drain,
    enroll,
    qcoord,
    qroom,
    qworker,
    split_by_attempt,
    worker_peer,
    worker_process,
)
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import QueueOptions, submit_training

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

PAD_MB = 24


def statuses(events, state: str) -> list[dict]:
    return [e.data for e in events if e.kind == "status" and e.data.get("state") == state]


def uploads(events, name: str) -> list[dict]:
    return [e.data for e in events if e.kind == "transfer" and e.data.get("direction") == "upload" and e.data.get("name") == name]


def trained(events) -> list[int]:
    return [e.data["epoch"] for e in events if e.kind == "progress" and e.data.get("event") == "epoch_end"]


async def test_worker_killed_during_upload_the_next_worker_gets_the_package_again(
        qcoord, qroom, worker_process, sample_labels, slow_transfers, tmp_path):  # noqa: F811
    package = padded_package(sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=2), tmp_path / "padded", PAD_MB)
    size = package.stat().st_size
    first_token = await enroll(qcoord, qroom[0], "w-first")
    first = worker_process("w-first", qcoord.url, (qroom[0], first_token))
    first_id = await worker_peer(qcoord, qroom[0], "w-first")
    project = tmp_path / "project"
    handle = submit_training(package, client_spec(qcoord.url, qroom), project_dir=project, queue=QueueOptions())
    events: list = []
    await drain(handle, events, until=lambda e: e.kind == "status" and e.data.get("state") == "dispatched")
    worker_process("w-second", qcoord.url, (qroom[0], await enroll(qcoord, qroom[0], "w-second")))

    def mid_upload(e) -> bool:
        return e.kind == "transfer" and e.data.get("direction") == "upload" and e.data["name"] == package.name and e.data["done"] >= size // 5

    await drain(handle, events, until=mid_upload)
    first.kill9()
    job_id = handle.job_id
    assert not statuses(events, "transferred"), "the upload finished before the kill (the race this test needs was lost)"
    # What the kill left on the worker's disk: the partial copy and its sidecar, short of the package.
    parts = list((first.data_dir / "partial").glob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < size, parts
    assert parts[0].with_suffix(".json").is_file()
    assert (first.data_dir / "incoming" / job_id).is_dir()
    second_id = await worker_peer(qcoord, qroom[0], "w-second")

    await drain(handle, events)
    outcome = await handle.result()

    by_attempt = split_by_attempt(events)
    assert [(d["worker"], d["attempt"]) for d in statuses(events, "dispatched")] == [(first_id, 1), (second_id, 2)]
    assert [d for d in statuses(by_attempt[1], "queued") if "silent" in d.get("message", "")], "requeued because the killed worker went silent"
    # The second worker got the whole package from the client, from the first byte.
    again = uploads(by_attempt[2], package.name)
    assert again and again[0]["done"] < size // 5 and again[-1]["done"] == size
    assert trained(by_attempt[1]) == [] and trained(by_attempt[2]) == [0, 1]
    assert outcome.worker_id == second_id
    assert len(outcome.model_dirs) == 1 and (outcome.model_dirs[0] / "best.ckpt").stat().st_size > 0
    assert [p.name for p in (project / "models").iterdir()] == [outcome.model_dirs[0].name]
    assert len([e for e in events if e.kind == "result"]) == 1
    record = await qcoord.jobstore.get_job(job_id)
    assert (record.state, record.attempt, record.retries, record.worker_id) == ("succeeded", 2, 1, second_id)

    # The killed worker starts again on the same data dir: the job's incoming folder (an upload
    # no link will ever finish) is cleared; the partial copy stays for a resume of the same content.
    restarted = worker_process("w-first", qcoord.url, (qroom[0], first_token))
    await worker_peer(qcoord, qroom[0], "w-first")
    assert restarted.data_dir == first.data_dir
    assert not (first.data_dir / "incoming" / job_id).exists(), restarted.output()[-2000:]
    assert parts[0].is_file() and parts[0].with_suffix(".json").is_file()


async def test_client_killed_during_upload_attach_takes_the_job_back(
        qcoord, qroom, qworker, training_package, slow_transfers, tmp_path, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="sleap_rtc_plugin.peer")
    package = padded_package(training_package, tmp_path / "padded", PAD_MB)
    size = package.stat().st_size
    worker = await qworker("w-only")
    project = tmp_path / "project"
    common = ["--server", qcoord.url, "--room-id", qroom[0], "--token", qroom[1], "--room-secret", SECRET,
              "--pkg-path", str(package), "--project-dir", str(project), "--no-progress", "--queue"]
    env = {**os.environ, "SLEAP_RTC_ICE_LOOPBACK": "1"}
    client = await asyncio.create_subprocess_exec(sys.executable, "-m", "sleap_rtc_plugin", "client-train", *common,
                                                  stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env, cwd=tmp_path)
    partial = worker.data_dir / "partial"

    def receiving() -> bool:
        parts = list(partial.glob("*.part")) if partial.is_dir() else []
        return bool(parts) and parts[0].stat().st_size >= size // 5

    try:
        async with asyncio.timeout(180):
            while not receiving():
                assert client.returncode is None, "the client ended before its upload got going"
                await asyncio.sleep(0.05)
    finally:
        client.send_signal(signal.SIGKILL)  # the client's machine dies mid-upload
        await client.wait()
    (job_id,) = list(qcoord.queue.jobs)
    (part,) = partial.glob("*.part")
    assert part.stat().st_size < size, "the upload finished before the kill (the race this test needs was lost)"
    await asyncio.sleep(2.0)
    assert qcoord.queue.jobs[job_id].state in ("dispatched", "queued"), "the job is waiting, not lost"

    again = await asyncio.create_subprocess_exec(sys.executable, "-m", "sleap_rtc_plugin", "client-train", *common, "--attach", job_id,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path)
    out, _ = await asyncio.wait_for(again.communicate(), 300)
    text = out.decode(errors="replace")
    assert again.returncode == 0, text

    (model_dir,) = (project / "models").iterdir()
    assert (model_dir / "best.ckpt").stat().st_size > 0
    record = await qcoord.jobstore.get_job(job_id)
    # The worker saw the client's link die before a job_submit and gave the attempt back (an
    # infrastructure retry); the attached client followed attempt 2.
    assert (record.state, record.attempt, record.retries, record.worker_id) == ("succeeded", 2, 1, worker.peer_id)
    # The second upload resumed from the partial copy the worker kept; nothing partial is left.
    assert any("resuming at" in r.getMessage() and package.name in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records if "resum" in r.getMessage()]
    assert not list(partial.glob("*.part"))
