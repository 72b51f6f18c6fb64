"""Issue 19 item 4: a worker that lost its socket in a network blip takes its id back at
once with its worker token -- while the coordinator still holds the dead socket -- and
keeps the job it is running (no waiting out the heartbeat timeout, no requeue)."""

from __future__ import annotations

import time

from fixtures_queue import enroll, eventually, gpu, start_server

from sleap_rtc_plugin.coordinator import CoordinatorClient

SPEC = {"kind": "train", "package": "labels.slp.training_job.zip"}
HEARTBEAT_TIMEOUT = 30.0


async def test_blipped_worker_reclaims_its_id_at_once_and_keeps_its_job(tmp_path):
    server = await start_server(tmp_path / "c.sqlite3", heartbeat_interval=10.0, heartbeat_timeout=HEARTBEAT_TIMEOUT, lease_seconds=60.0, reconnect_grace=60.0)
    room_id, room_token, _ = await server.create_room()
    wtoken = await enroll(server, room_id, "gpu-1")
    peers: list[CoordinatorClient] = []

    async def open_peer(role: str, token: str, **kw) -> CoordinatorClient:
        c = CoordinatorClient(server.url, room_id=room_id, token=token, role=role, reconnect=False, **kw)  # type: ignore[arg-type]
        await c.start()
        peers.append(c)
        return c

    try:
        old = await open_peer("worker", wtoken, metadata=gpu(8_000))
        client = await open_peer("client", room_token, peer_id="c1")
        await client.queue_submit("job", SPEC)
        assert (await old.next_push("job_dispatch", timeout=10)).job_id == "job"
        await old.report("job", 1, "accepted")
        await old.update(status="busy")
        await old.report("job", 1, "running")
        old_entry = server.presence.get(room_id, "gpu-1")

        # The blip: the worker gave its socket up; the coordinator has not noticed (the old
        # socket is still open and registered). The worker reconnects with its token.
        started = time.monotonic()
        new = await open_peer("worker", wtoken, status="busy", metadata=gpu(8_000))
        assert time.monotonic() - started < HEARTBEAT_TIMEOUT / 3
        assert new.peer_id == "gpu-1"
        entry = server.presence.get(room_id, "gpu-1")
        assert entry is not old_entry and entry.via_token and entry.status == "busy"
        await eventually(lambda: not old.connected, timeout=10)  # the stale socket is closed, told why

        job = server.queue.jobs["job"]
        assert (job.state, job.worker_id, job.attempt, job.retries) == ("running", "gpu-1", 1, 0)  # kept, not requeued
        await new.report("job", 1, "succeeded", message="done")  # the same attempt goes on
        ready = await client.next_push("queue_update", job_id="job", timeout=10, where=lambda m: m.state == "results_ready")
        assert ready.attempt == 1
    finally:
        for c in peers:
            await c.close()
        await server.stop()
