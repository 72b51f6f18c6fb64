"""Attacks on the job queue and worker identity, against a running coordinator.

Each test plays a hostile room member with the real protocol classes
(:class:`CoordinatorClient` speaking real frames): a "worker" holding only the room
token that advertises a huge GPU, a client that learned someone else's job id, a
squatter on an enrolled worker's id across a coordinator restart. Each asserts the
refusal and that the job (or the id) is exactly where it was.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json

import pytest
from fixtures_queue import GRACE, LEASE, enroll, eventually, gpu, start_server

from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorError, admin_cli
from sleap_rtc_plugin.coordinator.client import admin_request
from sleap_rtc_plugin.coordinator.jobstore import JobStore
from sleap_rtc_plugin.util.clock import ManualClock
from sleap_rtc_plugin.worker.agent import Worker, WorkerOptions

TRAIN = {"kind": "train", "package": "labels.slp.training_job.zip"}
TRACK = {"kind": "track", "package": "labels.slp.inference_job.zip"}
OWNER = "owner-secret-" + "x" * 32
#: Slow enough for a real in-process worker on a loaded 2-core machine.
SLOW = {"heartbeat_interval": 0.5, "heartbeat_timeout": 6.0, "lease_seconds": 3.0, "reconnect_grace": 4.0}


class System:
    """A live coordinator, one room, an admin token and the peers a test opened."""

    def __init__(self, server, room_id: str, token: str, admin: str):
        self.server, self.room_id, self.token, self.admin = server, room_id, token, admin
        self.peers: list[CoordinatorClient] = []

    async def peer(self, role: str, *, token: str | None = None, start: bool = True, **kw) -> CoordinatorClient:
        c = CoordinatorClient(self.server.url, room_id=self.room_id, token=token or self.token, role=role,  # type: ignore[arg-type]
                              backoff_initial=0.05, backoff_max=0.3, **kw)
        self.peers.append(c)
        if start:
            await c.start()
        return c

    def job(self, job_id: str):
        return self.server.queue.jobs.get(job_id)

    async def close(self) -> None:
        for c in self.peers:
            await c.close()
        await self.server.stop()


async def open_system(tmp_path, port: int = 0, **kw) -> System:
    server = await start_server(tmp_path / "coordinator.sqlite3", port, **kw)
    room_id, token, _ = await server.create_room()
    admin = await JobStore(server.store).create_admin_token("tests")
    return System(server, room_id, token, admin)


def real_worker(system: System, name: str, token: str, data_dir) -> Worker:
    return Worker(WorkerOptions(
        server_url=system.server.url, room_id=system.room_id, token=token, room_secret="adv-queue secret", name=name,
        data_dir=data_dir, status_port=0, ice_loopback=True, heartbeat_interval=0.5, heartbeat_timeout=6.0,
    ))


async def update(client: CoordinatorClient, job_id: str, state: str, timeout: float = 20.0):
    return await client.next_push("queue_update", job_id=job_id, timeout=timeout, where=lambda m: m.state == state)


async def refused(coro, code: str) -> CoordinatorError:
    with pytest.raises(CoordinatorError) as err:
        await coro
    assert err.value.code == code, err.value
    return err.value


async def test_room_token_rogue_gets_no_dispatch_and_cannot_end_a_job(tmp_path, sentinel, capsys):
    """Item 2a: a rogue "worker" with only the room token advertising 80 GB used to win
    every dispatch (most free memory first) and could end the job with one report."""
    system = await open_system(tmp_path, **SLOW)
    worker = real_worker(system, "lab-gpu", await enroll(system.server, system.room_id, "lab-gpu"), sentinel.data_dir)
    try:
        await worker.start()
        rogue = await system.peer("worker", peer_id="rogue", metadata=gpu(80_000))
        client = await system.peer("client", peer_id="c1")

        await client.queue_submit("job-1", TRAIN, owner=OWNER)
        assert (await update(client, "job-1", "dispatched")).worker_id == "lab-gpu"
        with pytest.raises(TimeoutError):
            await rogue.next_push("job_dispatch", timeout=1.0)
        for state, failure in (("succeeded", None), ("failed", "job"), ("failed", "infra"), ("rejected", None)):
            await refused(rogue.report("job-1", 1, state, failure=failure), "not_assigned")
        job = system.job("job-1")
        assert (job.state, job.attempt, job.worker_id, job.retries) in {("dispatched", 1, "lab-gpu", 0), ("running", 1, "lab-gpu", 0)}
        await client.queue_cancel("job-1", owner=OWNER)

        # The room's admin may decide to trust room-token workers: then the rogue's memory wins.
        parser = argparse.ArgumentParser()
        admin_cli.add_arguments(parser)
        argv = ["room-policy", system.room_id, "--allow-room-token-workers", "--server", system.server.url, "--admin-token", system.admin, "--json"]
        capsys.readouterr()
        assert await admin_cli.run_async(parser.parse_args(argv)) == 0
        assert json.loads(capsys.readouterr().out) == {"room_id": system.room_id, "allow_room_token_workers": True, "source": "room"}
        await client.queue_submit("job-2", TRAIN, owner=OWNER)
        assert (await update(client, "job-2", "dispatched")).worker_id == "rogue"
        assert (await rogue.next_push("job_dispatch", timeout=10)).job_id == "job-2"
        # ...and back to the secure default, which survives a reload of the policy table.
        await admin_request(system.server.url, system.admin, "room_policy", {"room_id": system.room_id, "allow_room_token_workers": None})
        assert await system.server.jobstore.room_policies() == {}
        assert not system.server.queue.allows_room_token_workers(system.room_id)
    finally:
        await worker.stop()
        await system.close()
    sentinel.assert_unchanged()


async def test_auth_failed_requeues_and_bans_that_worker(tmp_path):
    """Item 2b: the client's word that a worker failed the room-secret proof requeues the
    attempt elsewhere and that worker never gets the job again; only the job's client may say so."""
    system = await open_system(tmp_path)
    try:
        bad = await system.peer("worker", token=await enroll(system.server, system.room_id, "w-bad"), metadata=gpu(40_000))
        good = await system.peer("worker", token=await enroll(system.server, system.room_id, "w-good"), metadata=gpu(8_000))
        client = await system.peer("client", peer_id="c1")
        stranger = await system.peer("client", peer_id="c2")

        await client.queue_submit("job", TRAIN, owner=OWNER)
        assert (await update(client, "job", "dispatched")).worker_id == "w-bad"
        await bad.report("job", 1, "accepted")
        await refused(stranger.client_report("job", 1, "auth_failed"), "not_owner")
        await refused(stranger.client_report("job", 1, "results_received"), "not_owner")
        assert (system.job("job").state, system.job("job").attempt, system.job("job").worker_id) == ("dispatched", 1, "w-bad")

        await client.client_report("job", 1, "auth_failed", "bad_secret: the worker's proof did not match")
        second = await update(client, "job", "dispatched")
        assert (second.worker_id, second.attempt) == ("w-good", 2)
        assert system.job("job").banned == ["w-bad"] and system.job("job").state == "dispatched"
        await refused(bad.report("job", 1, "succeeded"), "stale_attempt")
        await client.client_report("job", 1, "auth_failed")  # said again: harmless
        assert (system.job("job").state, system.job("job").attempt, system.job("job").worker_id, system.job("job").banned) == ("dispatched", 2, "w-good", ["w-bad"])

        # Even when the only other worker failed it, the banned one never gets it back.
        await good.report("job", 2, "failed", failure="infra", message="CUDA device lost")
        third = await update(client, "job", "dispatched")
        assert (third.worker_id, third.attempt) == ("w-good", 3)
        assert (await bad.next_push("job_dispatch", timeout=5)).attempt == 1  # its only dispatch
        with pytest.raises(TimeoutError):
            await bad.next_push("job_dispatch", timeout=1.0)
        stored = await system.server.jobstore.get_job("job")
        assert stored.banned == ["w-bad"]

        # A worker claiming success without passing the proof is no better: requeued, banned,
        # and with every matching worker banned the job waits instead of going back.
        await good.report("job", 3, "succeeded")
        await update(client, "job", "results_ready")
        await client.client_report("job", 3, "auth_failed", "bad_secret")
        await update(client, "job", "queued")
        for _ in range(3):  # several queue ticks
            await system.server.queue.tick()
        job = system.job("job")
        assert (job.state, job.attempt, job.banned) == ("queued", 3, ["w-bad", "w-good"])
    finally:
        await system.close()


async def test_auth_failed_after_the_worker_gave_the_attempt_up_still_bans_it(tmp_path):
    """A real worker with the wrong secret abandons the dispatch itself ("client left") before
    the client's ``auth_failed`` arrives; the job is requeued and may already be back on the
    same worker. The late report still bans that worker and takes the job back from it."""
    system = await open_system(tmp_path)
    try:
        bad = await system.peer("worker", token=await enroll(system.server, system.room_id, "w-bad"), metadata=gpu(40_000))
        client = await system.peer("client", peer_id="c1")
        await client.queue_submit("job", TRAIN, owner=OWNER)
        assert (await update(client, "job", "dispatched")).worker_id == "w-bad"
        await bad.report("job", 1, "failed", failure="infra", message="client left before submitting")
        again = await update(client, "job", "dispatched")  # the only worker: it gets the job back
        assert (again.worker_id, again.attempt) == ("w-bad", 2)

        await client.client_report("job", 1, "auth_failed", "bad_secret")
        await update(client, "job", "queued")
        for _ in range(3):  # several queue ticks
            await system.server.queue.tick()
        job = system.job("job")
        assert (job.state, job.worker_id, job.banned) == ("queued", None, ["w-bad"])
        good = await system.peer("worker", token=await enroll(system.server, system.room_id, "w-good"), metadata=gpu(8_000))
        assert (await update(client, "job", "dispatched")).worker_id == good.peer_id
    finally:
        await system.close()


async def test_training_job_succeeds_only_when_the_client_has_the_results(tmp_path, unused_tcp_port):
    """Item 2c: a worker's ``succeeded`` alone used to end a training job; now the job
    waits in ``results_ready`` (worker freed, across a restart and the worker's loss)
    until its client confirms."""
    system = await open_system(tmp_path, unused_tcp_port)
    try:
        wtoken = await enroll(system.server, system.room_id, "w1")
        w1 = await system.peer("worker", token=wtoken, metadata=gpu(8_000))
        client = await system.peer("client", peer_id="c1")
        await client.queue_submit("train", TRAIN, owner=OWNER)
        await update(client, "train", "dispatched")
        await w1.update(status="busy")
        await w1.report("train", 1, "running")
        await w1.report("train", 1, "succeeded", message="model trained")
        ready = await update(client, "train", "results_ready")
        assert (ready.worker_id, ready.attempt, ready.message) == ("w1", 1, "model trained")
        assert (await system.server.jobstore.get_job("train")).state == "results_ready"
        assert system.server.queue.holding(system.room_id, "w1") is None  # the worker is free
        await w1.report("train", 1, "succeeded")  # a retried report (lost reply) is not refused
        await w1.update(status="available")
        await client.queue_submit("track", TRACK, owner=OWNER)
        await update(client, "track", "dispatched")
        await w1.report("track", 1, "succeeded")
        await update(client, "track", "succeeded")  # inference: the worker's word suffices

        # A restart and the worker's loss change nothing: no requeue, no retraining.
        await system.server.stop()
        clock = ManualClock()
        system.server = await start_server(tmp_path / "coordinator.sqlite3", unused_tcp_port, clock=clock)
        await w1.close()
        await client.wait_connected(timeout=30)
        clock.advance(LEASE + GRACE + 1.0)  # past lease + grace
        await system.server.queue.tick()
        assert (await client.queue_watch("train", owner=OWNER)).state == "results_ready"
        job = system.job("train")
        assert (job.state, job.attempt, job.retries, job.worker_id) == ("results_ready", 1, 0, "w1")

        await client.client_report("train", 1, "results_received")
        assert (await update(client, "train", "succeeded")).attempt == 1
        assert (await system.server.jobstore.get_job("train")).state == "succeeded"
        await client.client_report("train", 1, "results_received")  # repeated: harmless
    finally:
        await system.close()


async def test_jobs_belong_to_the_holder_of_the_owner_secret(tmp_path):
    """Item 9 (queue side): knowing a job id used to be enough to take the job over
    (``queue_watch``) or cancel it."""
    system = await open_system(tmp_path)
    try:
        owner = await system.peer("client", peer_id="c1")
        stranger = await system.peer("client", peer_id="c2")
        await owner.queue_submit("job", TRAIN, owner=OWNER)
        for attempt in (stranger.queue_watch("job"), stranger.queue_watch("job", owner="guess"),
                        stranger.queue_cancel("job"), stranger.queue_cancel("job", owner="guess")):
            err = await refused(attempt, "not_owner")
            assert "belongs to another client" in err.message and "\n" not in err.message
        await refused(stranger.queue_submit("job", TRAIN, owner="guess"), "job_exists")
        job = system.job("job")
        assert (job.state, job.client_id) == ("queued", "c1")
        row = await system.server.store._run(lambda: system.server.store._db.execute("SELECT * FROM jobs").fetchall())
        assert hashlib.sha256(OWNER.encode()).hexdigest() in str(row) and OWNER not in str(row)
        await system.server.flush_audit()
        assert OWNER not in str(await system.server.jobstore.read_audit(limit=500))

        # The owner's secret works from any connection (its client restarted)...
        watched = await stranger.queue_watch("job", owner=OWNER)
        assert watched.state == "queued" and system.job("job").client_id == "c2"
        await refused(owner.queue_cancel("job"), "not_owner")  # ...and the secret is always needed
        await stranger.queue_cancel("job", owner=OWNER)
        assert (await system.server.jobstore.get_job("job")).state == "cancelled"

        # The administrator can still cancel anyone's job.
        await owner.queue_submit("job-b", TRAIN, owner=OWNER)
        result = await admin_request(system.server.url, system.admin, "cancel", {"job_id": "job-b"})
        assert result == {"job_id": "job-b", "state": "cancelled"}
    finally:
        await system.close()


async def test_enrolled_worker_id_cannot_be_squatted_across_a_restart(tmp_path, sentinel, unused_tcp_port):
    """Item 10: while an enrolled worker is away (the coordinator restarted), the room
    token must not win its id, in any role; its own token takes the id back at once."""
    system = await open_system(tmp_path, unused_tcp_port, **SLOW)
    wtoken = await enroll(system.server, system.room_id, "lab-gpu")
    worker = real_worker(system, "lab-gpu", wtoken, sentinel.data_dir)
    try:
        await worker.start()
        # Its worker token is the key to its id: never printed, never in a session string for clients.
        for interactive in (True, False):
            assert wtoken not in worker.banner(interactive=interactive) and "enrolled" in worker.banner(interactive=interactive)
        with pytest.raises(RuntimeError, match="room token"):
            worker.session_string()
        worker.coordinator.backoff_initial = worker.coordinator.backoff_max = 3.0  # the squatter moves first
        await system.server.stop()
        system.server = await start_server(tmp_path / "coordinator.sqlite3", unused_tcp_port, **SLOW)
        assert system.server.presence.get(system.room_id, "lab-gpu") is None
        for role in ("worker", "client"):
            await refused(system.peer(role, peer_id="lab-gpu", metadata=gpu(80_000)), "token_required")
        await refused(system.peer("worker", token="swt_forged", peer_id="lab-gpu"), "bad_token")

        entry = await eventually(lambda: system.server.presence.get(system.room_id, "lab-gpu"), timeout=30)
        assert entry.via_token and worker.coordinator.connected
        worker.coordinator.backoff_initial = worker.coordinator.backoff_max = 0.2  # would be back at once if it fought
        await refused(system.peer("worker", peer_id="lab-gpu"), "token_required")
        assert system.server.presence.get(system.room_id, "lab-gpu") is entry

        # A restarted worker process with the token takes its id over at once; the old
        # socket is told why and does not fight back.
        again = await system.peer("worker", token=wtoken, metadata=gpu(8_000))
        assert again.peer_id == "lab-gpu"
        new_entry = system.server.presence.get(system.room_id, "lab-gpu")
        assert new_entry is not entry and new_entry.link.entry is new_entry
        await eventually(lambda: not worker.coordinator.connected, timeout=10)
        assert worker.coordinator._failure is not None and worker.coordinator._failure.code == "replaced"
        await asyncio.sleep(2.0)
        assert system.server.presence.get(system.room_id, "lab-gpu") is new_entry and again.connected
        await system.server.flush_audit()
        kinds = [e["kind"] for e in await system.server.jobstore.read_audit(limit=200)]
        assert "register_takeover" in kinds and kinds.count("register_failed") >= 4
    finally:
        await worker.stop()
        await system.close()
    sentinel.assert_unchanged()
