"""Shared fixtures for the coordinator tests (imported by tests/test_coordinator_*.py).

Every server binds 127.0.0.1 port 0 and uses short heartbeats so liveness tests finish
quickly; nothing here depends on wall-clock speed beyond generous timeouts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorServer


def live_coordinator(tmp_path, *, heartbeat_interval: float = 0.3, heartbeat_timeout: float = 1.5) -> CoordinatorServer:
    """A coordinator on a free loopback port with a throwaway SQLite file (``async with`` it)."""
    return CoordinatorServer("127.0.0.1", 0, tmp_path / "coordinator.sqlite3",
                             heartbeat_interval=heartbeat_interval, heartbeat_timeout=heartbeat_timeout)


@pytest.fixture
async def coordinator(tmp_path):
    """A live coordinator with short heartbeats, so liveness tests finish quickly."""
    async with live_coordinator(tmp_path) as server:
        yield server


@pytest.fixture
async def room(coordinator):
    """``(room_id, token)`` of a fresh room on :func:`coordinator`."""
    room_id, token, _ = await coordinator.create_room()
    return room_id, token


@pytest.fixture
async def make_client(coordinator, room):
    """Factory for started :class:`CoordinatorClient` s in ``room``; all closed at teardown."""
    clients: list[CoordinatorClient] = []

    async def factory(role: str = "client", *, start: bool = True, url: str | None = None, room_id=None, token=None, **kwargs: Any):
        client = CoordinatorClient(
            url or coordinator.url,
            room_id=room_id or room[0],
            token=token or room[1],
            role=role,  # type: ignore[arg-type]
            backoff_initial=0.05,
            backoff_max=0.5,
            **kwargs,
        )
        clients.append(client)
        if start:
            await client.start()
        return client

    yield factory
    for client in clients:
        await client.close()


class Raw:
    """A bare websocket speaking JSON by hand: it can forge fields and fall silent."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 10.0, *, skip_pings: bool = True) -> dict[str, Any]:
        import asyncio

        async with asyncio.timeout(timeout):
            while True:
                data = json.loads(await self.ws.recv())
                if skip_pings and data.get("type") == "ping":
                    continue
                return data

    async def request(self, **frame: Any) -> dict[str, Any]:
        await self.send(**frame)
        return await self.recv()

    async def register(self, room: tuple[str, str], role: str = "worker", **extra: Any) -> dict[str, Any]:
        reply = await self.request(type="register", room_id=room[0], token=room[1], role=role, ref="reg", **extra)
        assert reply["type"] == "registered", reply
        return reply


@pytest.fixture
async def raw(coordinator):
    """Factory for :class:`Raw` connections to :func:`coordinator`."""
    sockets: list[ClientConnection] = []

    async def factory() -> Raw:
        ws = await connect(coordinator.url, ping_interval=None)
        sockets.append(ws)
        return Raw(ws)

    yield factory
    for ws in sockets:
        await ws.close()
