"""Fixtures for the queue/admin coordinator tests: a coordinator with short leases,
an admin token, and factories for worker/client peers (real sockets, real server)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorServer
from sleap_rtc_plugin.coordinator.jobstore import JobStore

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


@pytest.fixture
async def peer(qserver, qroom):
    """Factory: ``await peer("worker", peer_id="w1", metadata=gpu(8000))``."""
    made: list[CoordinatorClient] = []

    async def factory(role: str = "client", *, url: str | None = None, token: str | None = None, **kw: Any) -> CoordinatorClient:
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
