"""Queue caps per room and per client: a clear ``queue_full`` refusal, nothing stored."""

from __future__ import annotations

import pytest
from fixtures_queue import start_server

from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorError
from sleap_rtc_plugin.coordinator.queue_limits import QueueLimits

SPEC = {"kind": "train", "package": "labels.slp.training_job.zip"}


@pytest.fixture
async def capped(tmp_path):
    server = await start_server(tmp_path / "c.sqlite3", queue_limits=QueueLimits(max_jobs_per_room=3, max_jobs_per_client=2))
    room_id, token, _ = await server.create_room()
    clients: list[CoordinatorClient] = []

    async def client(peer_id: str) -> CoordinatorClient:
        c = CoordinatorClient(server.url, room_id=room_id, token=token, role="client", peer_id=peer_id, reconnect=False)
        await c.start()
        clients.append(c)
        return c

    try:
        yield server, client
    finally:
        for c in clients:
            await c.close()
        await server.stop()


async def refused(client: CoordinatorClient, job_id: str) -> str:
    with pytest.raises(CoordinatorError) as err:
        await client.queue_submit(job_id, SPEC)
    assert err.value.code == "queue_full"
    assert client.connected  # a refusal, not a dropped connection
    return str(err.value)


async def test_client_and_room_caps_refuse_with_queue_full_and_store_nothing(capped):
    server, client = capped
    alice, bob = await client("alice"), await client("bob")
    await alice.queue_submit("a1", SPEC)
    await alice.queue_submit("a2", SPEC)
    message = await refused(alice, "a3")
    assert "max_jobs_per_client=2" in message and "\n" not in message
    assert await alice.queue_submit("a2", SPEC) == 1  # a retried submit of a queued job is not refused
    await bob.queue_submit("b1", SPEC)
    message = await refused(bob, "b2")  # bob has 1 of his 2, but the room holds 3 of 3
    assert "max_jobs_per_room=3" in message
    for job_id in ("a3", "b2"):
        assert job_id not in server.queue.jobs and await server.jobstore.get_job(job_id) is None
    assert sorted(server.queue.jobs) == ["a1", "a2", "b1"]  # nothing lost either

    await alice.queue_cancel("a1")  # a finished job frees its place
    await bob.queue_submit("b2", SPEC)
    assert sorted(server.queue.jobs) == ["a2", "b1", "b2"]


def test_caps_are_validated():
    with pytest.raises(ValueError):
        QueueLimits(max_jobs_per_room=-1)
    QueueLimits(0, 0)  # 0 lifts the caps
