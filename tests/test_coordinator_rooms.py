"""Rooms: creation, tokens (hashed, constant-time), expiry, persistence, /health."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import urllib.request

import pytest
from fixtures_coordinator import coordinator, make_client, raw, room  # noqa: F401

from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorError, CoordinatorServer, create_room


async def test_create_room_over_the_wire_and_register(coordinator, make_client):
    room_id, token, expires_at = await create_room(coordinator.url, ttl_hours=2)
    assert len(token) >= 40 and room_id
    assert 7000 < expires_at - __import__("time").time() <= 7200
    worker = await make_client("worker", room_id=room_id, token=token, metadata={"gpus": []})
    assert worker.connected and worker.peer_id.startswith("w-")


async def test_token_is_stored_only_as_sha256(coordinator, tmp_path):
    room_id, token, _ = await create_room(coordinator.url)
    raw_db = (tmp_path / "coordinator.sqlite3").read_bytes()
    assert token.encode() not in raw_db
    db = sqlite3.connect(tmp_path / "coordinator.sqlite3")
    (stored,) = db.execute("SELECT token_hash FROM rooms WHERE room_id = ?", (room_id,)).fetchone()
    db.close()
    assert stored == hashlib.sha256(token.encode()).hexdigest()


async def test_wrong_token_fails_fast_without_retry(coordinator, room, make_client):
    client = await make_client("worker", start=False, token=room[1][:-2] + "xx")
    with pytest.raises(CoordinatorError) as err:
        await asyncio.wait_for(client.start(), 10)
    assert err.value.code == "bad_token"
    assert not client.connected


async def test_unknown_room_looks_like_wrong_token(coordinator, room, make_client):
    client = await make_client("worker", start=False, room_id="no-such-room")
    with pytest.raises(CoordinatorError) as err:
        await client.start()
    assert err.value.code == "bad_token"


async def test_expired_room_refuses_registration(coordinator, make_client):
    room_id, token, _ = await coordinator.create_room(ttl_hours=0.5 / 3600)
    await asyncio.sleep(0.7)
    client = await make_client("worker", start=False, room_id=room_id, token=token)
    with pytest.raises(CoordinatorError) as err:
        await client.start()
    assert err.value.code == "room_expired"


async def test_live_peer_dropped_when_room_expires(coordinator, raw):
    room_id, token, _ = await coordinator.create_room(ttl_hours=1.0 / 3600)
    peer = await raw()
    await peer.register((room_id, token))
    reply = await peer.recv(timeout=10)
    assert reply["type"] == "error" and reply["code"] == "room_expired"
    assert len(coordinator.presence) == 0


async def test_bad_ttl_is_a_typed_error(raw):
    peer = await raw()
    reply = await peer.request(type="create_room", ttl_hours=-1, ref="x")
    assert reply == {"type": "error", "v": 1, "code": "bad_value", "message": reply["message"], "ref": "x", "source": None}


async def test_rooms_persist_across_restart(tmp_path):
    db = tmp_path / "rooms.sqlite3"
    async with CoordinatorServer(port=0, db_path=db) as first:
        room_id, token, _ = await first.create_room()
    async with CoordinatorServer(port=0, db_path=db) as second:
        async with CoordinatorClient(second.url, room_id=room_id, token=token, role="worker") as client:
            assert client.connected
        with pytest.raises(CoordinatorError) as err:
            async with CoordinatorClient(second.url, room_id=room_id, token="wrong", role="worker"):
                pass
        assert err.value.code == "bad_token"


async def test_health_endpoint(coordinator, room, make_client):
    await make_client("worker")
    await make_client("client")
    url = coordinator.url.replace("ws://", "http://") + "/health"

    def fetch():
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], json.loads(resp.read())

    status, ctype, body = await asyncio.to_thread(fetch)
    assert status == 200 and ctype == "application/json"
    assert body["status"] == "ok" and body["rooms"] == 1 and body["peers"] == 2
    assert body["version"] == __import__("sleap_rtc_plugin").__version__


async def test_unreachable_server_is_a_coordinator_error():
    client = CoordinatorClient("ws://127.0.0.1:9", room_id="r", token="t", role="client")
    with pytest.raises(CoordinatorError) as err:
        await client.start()
    assert err.value.code == "unreachable"


def test_default_bind_is_loopback():
    assert CoordinatorServer().host == "127.0.0.1"
