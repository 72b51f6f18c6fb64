"""A peer is its socket: no forging sources, stealing ids, touching others' metadata,
or reaching another room."""

from __future__ import annotations

import asyncio

import pytest
from fixtures_coordinator import coordinator, make_client, raw, room  # noqa: F401

from sleap_rtc_plugin.coordinator import CoordinatorError


async def test_forged_source_is_replaced_by_the_real_sender(room, raw, make_client):
    victim = await make_client("worker", peer_id="victim-worker")
    target = await make_client("client", peer_id="target-client")
    attacker = await raw()
    await attacker.register(room, role="client", peer_id="attacker")
    reply = await attacker.request(type="relay", target="target-client", kind="offer", payload={"sdp": "evil"}, source="victim-worker", ref="1")
    assert reply["type"] == "ok" and reply["ref"] == "1"
    relay = await target.next_relay("offer", timeout=10)
    assert relay.source == "attacker"
    assert relay.payload == {"sdp": "evil"}
    assert victim.connected


async def test_live_peer_id_cannot_be_taken(room, make_client):
    await make_client("worker", peer_id="gpu-1")
    thief = await make_client("worker", start=False, peer_id="gpu-1")
    with pytest.raises(CoordinatorError) as err:
        await thief.start()
    assert err.value.code == "peer_id_in_use"


async def test_peer_id_reusable_after_old_socket_died(coordinator, room, raw, make_client):
    first = await raw()
    await first.register(room, peer_id="gpu-2")
    await first.ws.close()
    for _ in range(100):
        if coordinator.presence.get(room[0], "gpu-2") is None:
            break
        await asyncio.sleep(0.05)
    again = await make_client("worker", peer_id="gpu-2")
    assert again.peer_id == "gpu-2"


async def test_update_only_ever_changes_the_sender(room, raw, make_client):
    owner = await make_client("worker", peer_id="owner", metadata={"labels": {"lab": "a"}})
    observer = await make_client("client")
    other = await raw()
    await other.register(room, peer_id="other")
    reply = await other.request(type="update_peer", peer_id="owner", metadata={"labels": {"lab": "pwned"}}, status="busy", ref="u")
    assert reply["type"] == "ok"
    peers = {p.peer_id: p for p in await observer.discover(role="worker")}
    assert peers["owner"].metadata == {"labels": {"lab": "a"}} and peers["owner"].status == "available"
    assert peers["other"].metadata == {"labels": {"lab": "pwned"}} and peers["other"].status == "busy"
    assert owner.connected


async def test_second_register_on_a_socket_is_refused(room, raw):
    peer = await raw()
    await peer.register(room, peer_id="p1")
    reply = await peer.request(type="register", room_id=room[0], token=room[1], role="worker", peer_id="p2", ref="again")
    assert reply["type"] == "error" and reply["code"] == "already_registered" and reply["ref"] == "again"


async def test_cross_room_relay_is_refused(coordinator, room, make_client):
    other_room = await coordinator.create_room()
    outsider = await make_client("worker", peer_id="outsider", room_id=other_room[0], token=other_room[1])
    insider = await make_client("client")
    with pytest.raises(CoordinatorError) as err:
        await insider.relay("outsider", "offer", {"sdp": "x"})
    assert err.value.code == "unknown_peer"
    assert await insider.discover(role=None) == []
    with pytest.raises(TimeoutError):
        await outsider.next_relay(timeout=0.5)


async def test_commands_before_register_are_refused(raw):
    peer = await raw()
    for frame in (
        {"type": "discover", "ref": "d"},
        {"type": "update_peer", "status": "busy", "ref": "u"},
        {"type": "relay", "target": "x", "kind": "offer", "payload": {}, "ref": "r"},
    ):
        reply = await peer.request(**frame)
        assert reply["type"] == "error" and reply["code"] == "not_registered" and reply["ref"] == frame["ref"]
    assert (await peer.request(type="ping", ts=1.5)) == {"type": "pong", "v": 1, "ts": 1.5}
    created = await peer.request(type="create_room", ref="c")
    assert created["type"] == "room_created" and created["ref"] == "c"


async def test_oversize_relay_payload_is_refused(room, make_client):
    worker = await make_client("worker")
    client = await make_client("client")
    with pytest.raises(CoordinatorError) as err:
        await client.relay(worker.peer_id, "offer", {"sdp": "x" * (70 * 1024)})
    assert err.value.code == "oversize"
    await client.relay(worker.peer_id, "offer", {"sdp": "ok"})
    assert (await worker.next_relay(timeout=10)).payload == {"sdp": "ok"}
