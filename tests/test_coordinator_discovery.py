"""Discovery filters and relay delivery (including routed rejects and handlers)."""

from __future__ import annotations

import asyncio

import pytest
from fixtures_coordinator import coordinator, make_client, raw, room  # noqa: F401

from sleap_rtc_plugin.coordinator import CoordinatorError, RelayRejected


def gpu(free: int, total: int = 24000) -> dict:
    return {"name": "NVIDIA RTX", "memory_total_mb": total, "memory_free_mb": free}


@pytest.fixture
async def fleet(make_client):
    await make_client("worker", peer_id="big", metadata={"gpus": [gpu(2000), gpu(40000, 80000)], "labels": {"site": "a", "tier": "fast"}})
    await make_client("worker", peer_id="small", metadata={"gpus": [gpu(8000)], "labels": {"site": "a"}})
    await make_client("worker", peer_id="cpu", metadata={"gpus": [], "accelerator": "cpu", "labels": {"site": "b"}})
    await make_client("worker", peer_id="busy", status="busy", metadata={"gpus": [gpu(60000)], "labels": {"site": "a"}})
    return await make_client("client", peer_id="me")


async def ids(client, **filters) -> list[str]:
    return [p.peer_id for p in await client.discover(**filters)]


async def test_discover_by_role_excludes_self_and_ranks(fleet):
    assert await ids(fleet) == ["big", "small", "cpu", "busy"]
    assert await ids(fleet, role="client") == []
    assert sorted(await ids(fleet, role=None)) == ["big", "busy", "cpu", "small"]


async def test_discover_by_status(fleet):
    assert await ids(fleet, status="busy") == ["busy"]
    assert await ids(fleet, status="available") == ["big", "small", "cpu"]


async def test_discover_by_gpu_memory_uses_best_gpu(fleet):
    assert await ids(fleet, min_gpu_memory_mb=30000) == ["big", "busy"]
    assert await ids(fleet, min_gpu_memory_mb=8000, status="available") == ["big", "small"]
    assert "cpu" not in await ids(fleet, min_gpu_memory_mb=1)


async def test_discover_by_labels_exact_match(fleet):
    assert await ids(fleet, labels={"site": "a"}) == ["big", "small", "busy"]
    assert await ids(fleet, labels={"site": "a", "tier": "fast"}) == ["big"]
    assert await ids(fleet, labels={"site": "c"}) == []


async def test_discover_limit_and_truncation(fleet):
    assert await ids(fleet, limit=2) == ["big", "small"]


async def test_update_changes_what_discovery_sees(fleet, make_client):
    small = await make_client("worker", peer_id="late", metadata={"gpus": [gpu(100)]})
    await small.update(status="busy", metadata={"gpus": [gpu(90000)], "labels": {"site": "z"}})
    assert await ids(fleet, labels={"site": "z"}, status="busy", min_gpu_memory_mb=80000) == ["late"]


async def test_peer_disappears_from_discovery_when_it_leaves(fleet, coordinator, make_client):
    gone = await make_client("worker", peer_id="gone")
    assert "gone" in await ids(fleet)
    await gone.close()
    for _ in range(100):
        if "gone" not in await ids(fleet):
            break
        await asyncio.sleep(0.05)
    assert "gone" not in await ids(fleet)


async def test_offer_answer_roundtrip_with_handler(make_client):
    worker = await make_client("worker")
    seen = []

    async def answer(relay):
        seen.append(relay.kind)
        if relay.kind == "offer":
            await worker.relay(relay.source, "answer", {"sdp": "answer-for-" + relay.payload["sdp"]})

    worker.add_relay_handler(answer)
    worker.add_relay_handler(lambda relay: seen.append("sync"))
    client = await make_client("client")
    await client.relay(worker.peer_id, "offer", {"sdp": "o1"})
    reply = await client.next_relay("answer", source=worker.peer_id, timeout=10)
    assert reply.payload == {"sdp": "answer-for-o1"} and reply.source == worker.peer_id
    assert sorted(seen) == ["offer", "sync"]


async def test_routed_reject_reaches_the_client(make_client):
    worker = await make_client("worker", status="busy")
    client = await make_client("client")
    await client.relay(worker.peer_id, "offer", {"sdp": "o"})
    offer = await worker.next_relay("offer", timeout=10)
    await worker.relay(offer.source, "reject", {"code": "busy", "message": "worker is running another job"})
    with pytest.raises(RelayRejected) as err:
        await client.next_relay("answer", source=worker.peer_id, timeout=10)
    assert err.value.code == "busy" and err.value.source == worker.peer_id
    await worker.relay(client.peer_id, "reject", {"code": "busy"})
    rejected = await client.next_relay("reject", timeout=10)
    assert rejected.payload["code"] == "busy"


async def test_relay_to_unknown_peer_is_a_typed_error(make_client):
    client = await make_client("client")
    with pytest.raises(CoordinatorError) as err:
        await client.relay("nobody", "offer", {})
    assert err.value.code == "unknown_peer"
    assert client.connected


async def test_next_relay_filters_by_source_and_keeps_others(make_client):
    target = await make_client("client")
    a = await make_client("worker", peer_id="wa")
    b = await make_client("worker", peer_id="wb")
    await a.relay(target.peer_id, "answer", {"n": 1})
    await b.relay(target.peer_id, "answer", {"n": 2})
    assert (await target.next_relay("answer", source="wb", timeout=10)).payload == {"n": 2}
    assert (await target.next_relay(timeout=10)).payload == {"n": 1}


def test_fast_peer_list_frame_matches_the_protocol_encoder():
    from sleap_rtc_plugin.coordinator.presence import PeerEntry
    from sleap_rtc_plugin.coordinator.server import peer_list_frame
    from sleap_rtc_plugin.protocol.coordinator import PeerList

    entries = [
        PeerEntry(peer_id=f"w{i}", room_id="r", role="worker", status="available", metadata={"gpus": [gpu(i)], "labels": {"é": "ü"}}, link=None, room_expires_at=0)
        for i in range(3)
    ]
    for ref, truncated in ((None, False), ("r7", True)):
        fast = peer_list_frame([e.info_json() for e in entries], ref, truncated=truncated)
        assert fast == PeerList(peers=[e.info() for e in entries], ref=ref, truncated=truncated).encode()


async def test_huge_rooms_are_truncated_to_fit_one_frame(room, raw, make_client):
    big_meta = {"gpus": [], "blob": ["x" * 1000] * 20}  # ~20 KB; one string may be at most 1024 characters
    for i in range(15):
        peer = await raw()
        await peer.register(room, peer_id=f"fat{i}", metadata=big_meta)
    asker = await raw()
    await asker.register(room, role="client", peer_id="asker")
    await asker.ws.send('{"type":"discover","ref":"d"}')
    while '"type":"ping"' in (text := await asker.ws.recv()):
        pass
    reply = __import__("json").loads(text)
    assert reply["type"] == "peer_list" and reply["truncated"] is True
    assert 0 < len(reply["peers"]) < 15 and len(text.encode()) <= 256 * 1024
