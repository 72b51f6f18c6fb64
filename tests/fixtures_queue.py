"""Fixtures for the queue/admin coordinator tests: a coordinator with short leases,
an admin token, and factories for worker/client peers (real sockets, real server)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorServer
from sleap_rtc_plugin.coordinator.jobstore import JobStore
from sleap_rtc_plugin.util.clock import ManualClock

LEASE = 1.0
GRACE = 1.5


def gpu(free_mb: int, n: int = 1) -> dict[str, Any]:
    return {"gpus": [{"name": "GPU", "memory_total_mb": free_mb, "memory_free_mb": free_mb} for _ in range(n)], "accelerator": "cuda"}


async def start_server(db, port: int = 0, **kw: Any) -> CoordinatorServer:
    kw.setdefault("heartbeat_interval", 0.2)
    kw.setdefault("heartbeat_timeout", 1.0)
    kw.setdefault("lease_seconds", LEASE)
    kw.setdefault("reconnect_grace", GRACE)
    server = CoordinatorServer("127.0.0.1", port, db, **kw)
    await server.start()
    return server


@pytest.fixture
async def qserver(tmp_path):
    server = await start_server(tmp_path / "coordinator.sqlite3")
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def qroom(qserver):
    room_id, token, _ = await qserver.create_room()
    return room_id, token


@pytest.fixture
async def admin_token(qserver):
    return await JobStore(qserver.store).create_admin_token("tests")


async def enroll(server: CoordinatorServer, room_id: str, worker_id: str) -> str:
    """Enroll ``worker_id`` as an admin would (``sleap-rtc admin token create``); return its
    worker token. Queued jobs go only to enrolled workers by default."""
    existing = await server.jobstore.get_worker(room_id, worker_id)
    if existing is not None and existing.has_token:
        raise AssertionError(f"{worker_id} is already enrolled; reuse its token")
    token = await server.jobstore.set_worker_token(room_id, worker_id)
    record = await server.jobstore.get_worker(room_id, worker_id)
    assert record is not None
    server.queue.set_record(record)
    return token


@pytest.fixture
async def peer(qserver, qroom):
    """Factory: ``await peer("worker", peer_id="w1", metadata=gpu(8000))``. Workers are
    enrolled with a worker token (one per id, reused when the id registers again) unless
    a ``token`` is given or ``enroll_worker=False``."""
    made: list[CoordinatorClient] = []
    tokens: dict[str, str] = {}

    async def factory(role: str = "client", *, url: str | None = None, token: str | None = None, enroll_worker: bool = True, **kw: Any) -> CoordinatorClient:
        if role == "worker" and token is None and enroll_worker and kw.get("peer_id"):
            if kw["peer_id"] not in tokens:
                tokens[kw["peer_id"]] = await enroll(qserver, qroom[0], kw["peer_id"])
            token = tokens[kw["peer_id"]]
        client = CoordinatorClient(
            url or qserver.url, room_id=qroom[0], token=token or qroom[1], role=role,  # type: ignore[arg-type]
            backoff_initial=0.05, backoff_max=0.3, **kw,
        )
        made.append(client)
        await client.start()
        return client

    yield factory
    for client in made:
        await client.close()


async def eventually(predicate, timeout: float = 20.0, interval: float = 0.05):
    """Wait until ``predicate()`` is truthy; return its value."""
    async with asyncio.timeout(timeout):
        while True:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(interval)


def use_manual_clock(server: CoordinatorServer) -> ManualClock:
    """Put ``server``'s queue on a clock the test moves (before any job is queued)."""
    assert not server.queue.jobs, "switch clocks before queueing jobs"
    clock = ManualClock()
    server.queue.clock = clock
    return clock


async def live_through(server: CoordinatorServer, clock: ManualClock, job_id: str, seconds: float, step: float = 1.0) -> None:
    """Move ``clock`` on by ``seconds`` in steps shorter than a lease plus grace, waiting after
    each for the job's worker to renew its lease (any frame, a heartbeat ``pong`` included),
    then run one queue tick: a connected worker keeps its job however long this lasts."""
    queue = server.queue
    assert step < queue.lease_seconds + queue.reconnect_grace
    moved = 0.0
    while moved < seconds:
        clock.advance(step)
        moved += step
        await eventually(lambda: (queue.jobs[job_id].lease_expires_at or 0) >= clock.time() + queue.lease_seconds - 1e-6, timeout=10)
    await queue.tick()
