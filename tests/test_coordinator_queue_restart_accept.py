"""A coordinator restart between a dispatch and the worker's ``running`` report (kill -9
map ③, docs/queue.md). The worker's ``accepted`` lived only in the old process's memory,
and its ``running`` report, sent while the coordinator was down, was not delivered: the
restarted coordinator must not requeue the job "for want of an accept" while its worker
holds it (it used to, after lease + grace, and the job trained twice)."""

from __future__ import annotations

from fixtures_queue import GRACE, LEASE, enroll, gpu, live_through, start_server  # noqa: F401

from sleap_rtc_plugin.coordinator import CoordinatorClient
from sleap_rtc_plugin.util.clock import ManualClock

SPEC = {"kind": "train", "package": "labels.slp.training_job.zip"}


async def test_a_worker_back_busy_keeps_its_dispatched_job_and_progress_marks_it_running(tmp_path, unused_tcp_port):
    db = tmp_path / "c.sqlite3"
    server = await start_server(db, unused_tcp_port)
    room_id, token, _ = await server.create_room()

    def make(role, token=token, **kw):
        return CoordinatorClient(server.url, room_id=room_id, token=token, role=role, backoff_initial=0.05, backoff_max=0.3, **kw)

    worker = make("worker", await enroll(server, room_id, "w1"), metadata=gpu(8_000))
    spare = make("worker", await enroll(server, room_id, "w2"), metadata=gpu(4_000))  # a requeue would have somewhere to go
    client = make("client", peer_id="c1")
    for c in (worker, spare, client):
        await c.start()
    try:
        await client.queue_submit("job", SPEC)
        await client.next_push("queue_update", job_id="job", timeout=20, where=lambda m: m.state == "dispatched")
        await worker.report("job", 1, "accepted")
        await server.stop()  # what it knew only in memory (the accept) is gone, as after a kill -9
        await worker.update(status="busy")  # the package arrived and training started meanwhile

        clock = ManualClock()
        server = await start_server(db, unused_tcp_port, clock=clock)
        await worker.wait_connected(timeout=30)
        await client.wait_connected(timeout=30)
        await live_through(server, clock, "job", LEASE + GRACE + 1)
        job = server.queue.jobs["job"]
        assert (job.state, job.attempt, job.worker_id, job.retries) == ("dispatched", 1, "w1", 0), job.message

        # The first epoch's progress report: the job runs (its `running` report was lost).
        await worker.report("job", 1, "progress", detail={"model": "m", "epoch": 0})
        assert server.queue.jobs["job"].state == "running"
        watched = await client.queue_watch("job")
        assert (watched.state, watched.attempt, watched.worker_id) == ("running", 1, "w1")
    finally:
        for c in (worker, spare, client):
            await c.close()
        await server.stop()
