"""Heartbeats drop silent peers; clients reconnect and re-register after a restart."""

from __future__ import annotations

import asyncio

import pytest
from fixtures_coordinator import coordinator, make_client, raw, room  # noqa: F401
from websockets.exceptions import ConnectionClosed

from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorError, CoordinatorServer
from sleap_rtc_plugin.coordinator.server import CLOSE_DROPPED


async def test_silent_peer_is_dropped_and_live_one_kept(coordinator, room, raw, make_client):
    live = await make_client("worker", peer_id="live")
    silent = await raw()
    await silent.register(room, peer_id="silent")
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(20):
            while True:
                await silent.ws.recv()  # reads pings, never answers
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_DROPPED
    assert coordinator.presence.get(room[0], "silent") is None
    assert live.connected and coordinator.presence.get(room[0], "live") is not None
    observer = await make_client("client")
    assert [p.peer_id for p in await observer.discover()] == ["live"]


async def test_unregistered_silent_socket_is_dropped_too(coordinator, raw):
    idle = await raw()
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(20):
            while True:
                await idle.ws.recv()


async def test_client_reconnects_after_restart_with_latest_state(tmp_path, unused_tcp_port):
    db = tmp_path / "c.sqlite3"
    server = CoordinatorServer(port=unused_tcp_port, db_path=db, heartbeat_interval=0.3, heartbeat_timeout=1.5)
    await server.start()
    room_id, token, _ = await server.create_room()
    worker = CoordinatorClient(server.url, room_id=room_id, token=token, role="worker", peer_id="gpu-a", metadata={"gpus": []}, backoff_initial=0.05, backoff_max=0.5)
    await worker.start()
    await worker.update(status="busy", metadata={"gpus": [], "labels": {"v": "2"}})
    await server.stop()
    for _ in range(200):
        if not worker.connected:
            break
        await asyncio.sleep(0.05)
    assert not worker.connected
    with pytest.raises(CoordinatorError) as err:
        await worker.discover()
    assert err.value.code == "disconnected"
    await worker.update(status="available")  # kept locally, carried by the re-register

    server = CoordinatorServer(port=unused_tcp_port, db_path=db, heartbeat_interval=0.3, heartbeat_timeout=1.5)
    await server.start()
    try:
        await worker.wait_connected(timeout=30)
        assert worker.peer_id == "gpu-a" and worker.reconnects == 1
        entry = server.presence.get(room_id, "gpu-a")
        assert entry is not None and entry.status == "available" and entry.metadata == {"gpus": [], "labels": {"v": "2"}}
        async with CoordinatorClient(server.url, room_id=room_id, token=token, role="client") as client:
            await client.relay("gpu-a", "offer", {"sdp": "after-restart"})
            assert (await worker.next_relay("offer", timeout=10)).payload == {"sdp": "after-restart"}
    finally:
        await worker.close()
        await server.stop()


async def test_client_gives_up_when_room_is_gone_after_restart(tmp_path, unused_tcp_port):
    server = CoordinatorServer(port=unused_tcp_port, db_path=tmp_path / "one.sqlite3", heartbeat_interval=0.3, heartbeat_timeout=1.5)
    await server.start()
    room_id, token, _ = await server.create_room()
    client = CoordinatorClient(server.url, room_id=room_id, token=token, role="client", backoff_initial=0.05, backoff_max=0.2)
    await client.start()
    await server.stop()
    server = CoordinatorServer(port=unused_tcp_port, db_path=tmp_path / "other.sqlite3", heartbeat_interval=0.3, heartbeat_timeout=1.5)
    await server.start()
    try:
        with pytest.raises(CoordinatorError) as err:
            await client.wait_connected(timeout=30)
        assert err.value.code == "bad_token"
        with pytest.raises(CoordinatorError):
            await client.next_relay(timeout=5)
    finally:
        await client.close()
        await server.stop()


async def test_no_reconnect_when_disabled(coordinator, make_client):
    client = await make_client("client", reconnect=False)
    await coordinator.stop()
    with pytest.raises(CoordinatorError) as err:
        await client.wait_connected(timeout=30)
    assert err.value.code == "disconnected"
    await coordinator.start()  # the fixture stops it again


async def test_backoff_is_capped_with_jitter(monkeypatch, tmp_path, unused_tcp_port):
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def record(delay, *args, **kwargs):
        delays.append(delay)
        await real_sleep(0)

    client = CoordinatorClient(f"ws://127.0.0.1:{unused_tcp_port}", room_id="r", token="t", role="client", backoff_initial=0.1, backoff_max=0.8)
    client.request_timeout = 2
    monkeypatch.setattr("sleap_rtc_plugin.coordinator.client.asyncio.sleep", record)
    task = asyncio.ensure_future(client._reconnect())
    while len(delays) < 8:
        await real_sleep(0.01)
    client._closing = True
    await asyncio.wait_for(task, 10)
    ceilings = [min(0.8, 0.1 * 2**i) for i in range(8)]
    for delay, ceiling in zip(delays, ceilings):
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 0.8
