"""The job queue on a live coordinator: dispatch, positions, leases, fencing, requeue, restart."""

from __future__ import annotations

import asyncio

import pytest
from fixtures_queue import GRACE, LEASE, enroll, eventually, gpu, live_through, peer, qroom, qserver, start_server, use_manual_clock  # noqa: F401

from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorError
from sleap_rtc_plugin.coordinator.presence import PeerEntry
from sleap_rtc_plugin.coordinator.queue import requirements_met
from sleap_rtc_plugin.util.clock import ManualClock

SPEC = {"kind": "train", "package": "labels.slp.training_job.zip"}


async def dispatched(client: CoordinatorClient, job_id: str, timeout: float = 20.0):
    return await client.next_push("queue_update", job_id=job_id, timeout=timeout, where=lambda m: m.state == "dispatched")


async def test_dispatch_by_requirements_priority_and_positions(qserver, peer):
    small = await peer("worker", peer_id="w-small", metadata={**gpu(4_000), "labels": {"gpu": "t4"}})
    big = await peer("worker", peer_id="w-big", metadata={**gpu(40_000, n=2), "labels": {"gpu": "a100-80g"}})
    client = await peer("client", peer_id="c1")

    assert await client.queue_submit("job-a", SPEC, labels={"gpu": "a100*"}, min_gpu_memory_mb=20_000) == 0
    update = await dispatched(client, "job-a")
    assert (update.worker_id, update.attempt) == ("w-big", 1)
    dispatch = await big.next_push("job_dispatch", timeout=10)
    assert (dispatch.job_id, dispatch.attempt, dispatch.client_id, dispatch.spec) == ("job-a", 1, "c1", SPEC)
    assert qserver.presence.get(big.room_id, "w-big").status == "reserved"

    assert await client.queue_submit("job-b", SPEC, labels={"gpu": "a100*"}, gpu_count=2) == 0
    assert await client.queue_submit("job-c", SPEC, labels={"gpu": "a100*"}, priority=5) == 0  # jumps ahead of b
    moved = await client.next_push("queue_update", job_id="job-b", timeout=10, where=lambda m: m.position == 1)
    assert moved.state == "queued"
    # A job the busy worker cannot serve goes to another matching worker (no head-of-line block).
    await client.queue_submit("job-d", SPEC, labels={"gpu": "t4"})
    assert (await dispatched(client, "job-d")).worker_id == "w-small"
    assert (await small.next_push("job_dispatch", timeout=10)).job_id == "job-d"
    # Nothing matches 3 GPUs: it waits.
    await client.queue_submit("job-e", SPEC, gpu_count=3)

    await big.report("job-a", 1, "accepted")
    await big.update(status="busy")
    await big.report("job-a", 1, "running")
    await big.report("job-a", 1, "succeeded", message="done")
    # A training job succeeds only once the client holds the results.
    ready = await client.next_push("queue_update", job_id="job-a", timeout=10, where=lambda m: m.state == "results_ready")
    assert (ready.message, ready.worker_id) == ("done", "w-big")
    await client.client_report("job-a", 1, "results_received")
    await client.next_push("queue_update", job_id="job-a", timeout=10, where=lambda m: m.state == "succeeded")
    await big.update(status="available")
    assert (await dispatched(client, "job-c")).worker_id == "w-big"
    positions = {j.job_id: qserver.queue.position(j) for j in qserver.queue.jobs.values()}
    assert positions == {"job-b": 0, "job-c": None, "job-d": None, "job-e": 1}


@pytest.mark.parametrize(
    "labels, wanted, ok",
    [
        ({"gpu": "a100-80g"}, {"gpu": "a100*"}, True),
        ({"gpu": "a100-80g"}, {"gpu": "A100*"}, False),
        ({"gpu": "h100"}, {"gpu": "a100*"}, False),
        ({"gpu": "a100", "site": "lab-2"}, {"gpu": "a10?", "site": "lab-[12]"}, True),
        ({}, {"gpu": "*"}, False),
        ({"gpu": "v100"}, {}, True),
    ],
)
def test_glob_label_requirements(labels, wanted, ok):
    entry = PeerEntry("w", "r", "worker", "available", {**gpu(1000), "labels": labels}, link=None, room_expires_at=0)
    assert requirements_met(entry, {"labels": wanted}) is ok


async def test_glob_labels_decide_dispatch(qserver, peer):
    await peer("worker", peer_id="h100", metadata={**gpu(80_000), "labels": {"gpu": "h100"}})
    await peer("worker", peer_id="a100", metadata={**gpu(10_000), "labels": {"gpu": "a100-40g"}})
    client = await peer("client")
    await client.queue_submit("j1", SPEC, labels={"gpu": "a100*"})
    assert (await dispatched(client, "j1")).worker_id == "a100"


async def test_worker_pin_and_client_must_be_connected(qserver, qroom, peer):
    client = await peer("client", peer_id="c-away", reconnect=False)
    await client.queue_submit("pinned", SPEC, worker_id="w-2")
    await client.close()
    await peer("worker", peer_id="w-1", metadata=gpu(8_000))
    await peer("worker", peer_id="w-2", metadata=gpu(8_000))
    await asyncio.sleep(3 * 0.2)
    assert qserver.queue.jobs["pinned"].state == "queued"  # its client (with the package) is away
    back = await peer("client", peer_id="other-client")
    update = await back.queue_watch("pinned")
    assert update.state in ("queued", "dispatched")
    assert (await dispatched(back, "pinned")).worker_id == "w-2"


async def test_stale_attempt_is_refused_after_requeue(qserver, peer):
    clock = use_manual_clock(qserver)
    w1 = await peer("worker", peer_id="w1", metadata=gpu(8_000))
    client = await peer("client")
    await client.queue_submit("job", SPEC)
    assert (await dispatched(client, "job")).worker_id == "w1"
    await w1.report("job", 1, "accepted")
    await w1.update(status="busy")
    await w1.report("job", 1, "running")
    await w1.close()  # silent: no heartbeats renew the lease
    w2 = await peer("worker", peer_id="w2", metadata=gpu(8_000))
    await qserver.queue.tick()
    assert qserver.queue.jobs["job"].attempt == 1  # the lease has not run out yet
    clock.advance(LEASE + GRACE + 0.1)
    requeued = await client.next_push("queue_update", job_id="job", timeout=10, where=lambda m: m.state == "queued")
    assert "went silent" in requeued.message
    update = await dispatched(client, "job")
    assert (update.worker_id, update.attempt) == ("w2", 2)
    # The old worker comes back and tries to report its (stale) attempt.
    zombie = await peer("worker", peer_id="w1", metadata=gpu(8_000), status="busy")
    for state in ("running", "progress", "succeeded"):
        with pytest.raises(CoordinatorError) as err:
            await zombie.report("job", 1, state)
        assert err.value.code == "stale_attempt"
    with pytest.raises(CoordinatorError) as err:
        await zombie.report("job", 2, "succeeded")
    assert err.value.code == "not_assigned"
    await w2.report("job", 2, "succeeded")
    await client.next_push("queue_update", job_id="job", timeout=10, where=lambda m: m.state == "results_ready")
    await client.client_report("job", 2, "results_received")
    done = await client.next_push("queue_update", job_id="job", timeout=10, where=lambda m: m.state == "succeeded")
    assert done.attempt == 2
    with pytest.raises(CoordinatorError) as err:
        await zombie.report("job", 1, "succeeded")
    assert err.value.code == "stale_attempt"
    await qserver.flush_audit()
    kinds = [e["kind"] for e in await qserver.jobstore.read_audit(limit=200)]
    assert "stale_report" in kinds and "job_requeue" in kinds and kinds.count("dispatch") == 2


async def test_blip_shorter_than_grace_keeps_the_job(tmp_path):
    grace = 4.0
    server = await start_server(tmp_path / "c.sqlite3", reconnect_grace=grace)
    clock = use_manual_clock(server)
    room_id, token, _ = await server.create_room()

    def make(role, token=token, **kw):
        return CoordinatorClient(server.url, room_id=room_id, token=token, role=role, backoff_initial=0.05, backoff_max=0.3, **kw)

    holder = make("worker", await enroll(server, room_id, "w1"), metadata=gpu(9_000))
    spare = make("worker", await enroll(server, room_id, "spare"), metadata=gpu(8_000))  # a requeue would have somewhere to go
    client = make("client")
    for c in (holder, spare, client):
        await c.start()
    try:
        await client.queue_submit("job", SPEC)
        assert (await dispatched(client, "job")).worker_id == "w1"
        await holder.report("job", 1, "accepted")
        await holder.update(status="busy")
        await holder.report("job", 1, "running")
        holder._ws.transport.abort()  # a network blip: the socket dies, the process lives
        await eventually(lambda: holder.reconnects == 1, timeout=grace - 1)
        await holder.wait_connected(timeout=1)
        await live_through(server, clock, "job", LEASE + grace + 1)
        job = server.queue.jobs["job"]
        assert (job.state, job.attempt, job.worker_id, job.retries) == ("running", 1, "w1", 0)
        await holder.report("job", 1, "succeeded")
        assert (await client.next_push("queue_update", job_id="job", timeout=10, where=lambda m: m.state == "results_ready")).attempt == 1
    finally:
        for c in (holder, spare, client):
            await c.close()
        await server.stop()


async def test_job_error_is_not_retried_but_infra_failures_are_up_to_the_limit(qserver, peer):
    w1 = await peer("worker", peer_id="w1", metadata=gpu(8_000))
    client = await peer("client")
    await client.queue_submit("bad-config", SPEC)
    await dispatched(client, "bad-config")
    await w1.report("bad-config", 1, "failed", failure="job", message="sleap-nn train exited with code 1")
    failed = await client.next_push("queue_update", job_id="bad-config", timeout=10, where=lambda m: m.state == "failed")
    assert "exited with code 1" in failed.message
    stored = await qserver.jobstore.get_job("bad-config")
    assert (stored.state, stored.retries, stored.failure) == ("failed", 0, "job")

    await client.queue_submit("flaky", SPEC, max_retries=2)
    for attempt in (1, 2, 3):
        update = await dispatched(client, "flaky")
        assert (update.attempt, update.worker_id) == (attempt, "w1")  # the only worker: reused
        await w1.report("flaky", attempt, "failed", failure="infra", message="CUDA device lost")
    gave_up = await client.next_push("queue_update", job_id="flaky", timeout=10, where=lambda m: m.state == "failed")
    assert "gave up after 3" in gave_up.message


async def test_requeue_prefers_another_matching_worker(qserver, peer):
    w1 = await peer("worker", peer_id="w1", metadata=gpu(9_000))
    w2 = await peer("worker", peer_id="w2", metadata=gpu(8_000))
    client = await peer("client")
    await client.queue_submit("job", SPEC)
    assert (await dispatched(client, "job")).worker_id == "w1"  # most free memory first
    await w1.report("job", 1, "rejected", message="busy")
    assert (await dispatched(client, "job")).worker_id == "w2"
    await w2.report("job", 2, "running")


async def test_worker_restart_without_the_job_requeues_at_once(qserver, peer):
    w1 = await peer("worker", peer_id="w1", metadata=gpu(8_000))
    client = await peer("client")
    await client.queue_submit("job", SPEC, max_retries=1)
    await dispatched(client, "job")
    await w1.report("job", 1, "running")
    await w1.close()
    again = await peer("worker", peer_id="w1", metadata=gpu(8_000))  # a fresh process: available
    update = await client.next_push("queue_update", job_id="job", timeout=5, where=lambda m: m.state == "queued")
    assert "restarted" in update.message
    assert (await dispatched(client, "job", timeout=5)).attempt == 2
    await again.report("job", 2, "running")


async def test_jobs_and_positions_survive_a_restart(tmp_path, unused_tcp_port):
    db = tmp_path / "c.sqlite3"
    server = await start_server(db, unused_tcp_port)
    room_id, token, _ = await server.create_room()

    def make(role, token=token, **kw):
        return CoordinatorClient(server.url, room_id=room_id, token=token, role=role, backoff_initial=0.05, backoff_max=0.3, **kw)

    worker = make("worker", await enroll(server, room_id, "w1"), metadata={**gpu(8_000), "labels": {"gpu": "a100"}})
    client = make("client", peer_id="c1")
    await worker.start()
    await client.start()
    try:
        await client.queue_submit("running-job", SPEC, labels={"gpu": "a100"})
        await dispatched(client, "running-job")
        await worker.update(status="busy")
        await worker.report("running-job", 1, "running")
        await worker.report("running-job", 1, "checkpoint", detail={"epoch": 3, "sha256": "ab" * 32})
        for job_id, priority in [("q-low", 0), ("q-high", 10), ("q-low2", 0)]:
            await client.queue_submit(job_id, SPEC, labels={"gpu": "a100"}, priority=priority)
        before = {j.job_id: (j.state, server.queue.position(j), j.attempt) for j in server.queue.jobs.values()}
        assert before == {"running-job": ("running", None, 1), "q-high": ("queued", 0, 0), "q-low": ("queued", 1, 0), "q-low2": ("queued", 2, 0)}
        await server.stop()

        clock = ManualClock()
        server = await start_server(db, unused_tcp_port, clock=clock)
        await worker.wait_connected(timeout=30)
        await client.wait_connected(timeout=30)
        after = {j.job_id: (j.state, server.queue.position(j), j.attempt) for j in server.queue.jobs.values()}
        assert after == before
        watched = await client.queue_watch("q-low")
        assert (watched.state, watched.position) == ("queued", 1)
        assert (await client.queue_watch("running-job")).checkpoint == {"epoch": 3, "sha256": "ab" * 32}
        # The running attempt carries on: its reports are accepted and the lease holds.
        await live_through(server, clock, "running-job", LEASE + GRACE + 0.5)
        assert server.queue.jobs["running-job"].state == "running"
        await worker.report("running-job", 1, "succeeded")
        await worker.update(status="available")
        assert (await dispatched(client, "q-high")).attempt == 1
    finally:
        await worker.close()
        await client.close()
        await server.stop()


async def test_queue_requests_are_checked(qserver, qroom, peer):
    worker = await peer("worker", peer_id="w1")
    client = await peer("client", peer_id="c1")
    with pytest.raises(CoordinatorError) as err:
        await worker.queue_submit("x", SPEC)
    assert err.value.code == "not_client"
    with pytest.raises(CoordinatorError) as err:
        await client.report("x", 1, "running")
    assert err.value.code == "not_worker"
    with pytest.raises(CoordinatorError) as err:
        await client.queue_submit("x", SPEC, priority=10**9)
    assert err.value.code == "bad_value"
    with pytest.raises(CoordinatorError) as err:
        await worker.report("nope", 1, "running")
    assert err.value.code == "unknown_job"
    other = await peer("client", peer_id="c2")
    await client.queue_submit("mine", SPEC, gpu_count=8)
    assert await client.queue_submit("mine", SPEC, gpu_count=8) == 0  # idempotent retry
    with pytest.raises(CoordinatorError) as err:
        await other.queue_submit("mine", SPEC)
    assert err.value.code == "job_exists"
    with pytest.raises(CoordinatorError) as err:
        await other.queue_cancel("mine")
    assert err.value.code == "unknown_job"
    await client.queue_cancel("mine")
    assert (await client.next_push("queue_update", job_id="mine", timeout=10, where=lambda m: m.state == "cancelled")).state == "cancelled"
    assert worker.connected and client.connected
