"""The discovery index and its reply cache against the scan that defines discovery.

``presence.matches`` + ``presence.rank`` over every peer of the room is the definition;
``discovery.RoomIndex`` must give the same peers in the same order, and the same
encoded ``peer_list`` frame, on any room after any sequence of joins, updates and
leaves — including replies served from its cache.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sleap_rtc_plugin.coordinator.discovery import Query, RoomIndex, peer_list_frame
from sleap_rtc_plugin.coordinator.presence import PeerEntry, Presence, matches, rank
from sleap_rtc_plugin.protocol.coordinator import PeerList

ROLES = ["worker", "client"]
STATUSES = ["available", "reserved", "busy", "offline", "draining"]
IDS = [f"p{i}" for i in range(12)]

gpu = st.fixed_dictionaries({"memory_free_mb": st.one_of(st.integers(0, 5), st.integers(0, 90000), st.floats(0, 90000), st.just("junk"), st.booleans())})
label_value = st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(0, 2), st.none())
metadata = st.fixed_dictionaries(
    {},
    optional={
        "gpus": st.one_of(st.lists(gpu, max_size=3), st.just("junk")),
        "labels": st.one_of(st.dictionaries(st.sampled_from(["site", "tier", "x"]), label_value, max_size=3), st.just(["junk"])),
    },
)
query = st.builds(
    Query.of,
    role=st.sampled_from([None, *ROLES]),
    status=st.sampled_from([None, *STATUSES]),
    min_gpu_memory_mb=st.one_of(st.none(), st.sampled_from([0, 1, 3, 4, 5, 6, 1000, 40000, 90001]), st.integers(0, 90000)),
    labels=st.dictionaries(st.sampled_from(["site", "tier", "x"]), st.sampled_from(["a", "b", "c", "0"]), max_size=2),
)
join = st.tuples(st.just("join"), st.sampled_from(IDS), st.sampled_from(ROLES), st.sampled_from(STATUSES), metadata)
update = st.tuples(st.just("update"), st.sampled_from(IDS), st.one_of(st.none(), st.sampled_from(STATUSES)), st.one_of(st.none(), metadata))
leave = st.tuples(st.just("leave"), st.sampled_from(IDS))
ops = st.lists(st.one_of(join, join, update, leave), max_size=40)


def scan(entries: list[PeerEntry], q: Query, exclude: str | None = None) -> list[str]:
    labels = dict(q.labels)
    found = [
        e for e in entries
        if e.peer_id != exclude and matches(e, role=q.role, status=q.status, min_gpu_memory_mb=q.min_gpu_memory_mb, labels=labels)
    ]
    return [e.peer_id for e in sorted(found, key=rank)]


def scan_frame(entries: list[PeerEntry], q: Query, exclude: str | None, ref: str, limit: int, budget: int) -> str:
    """The frame the server built before the index: scan, then limit, then byte budget."""
    by_id = {e.peer_id: e for e in entries}
    found = [by_id[i] for i in scan(entries, q, exclude)]
    parts, size = [], 0
    for e in found[:limit]:
        size += len(e.info_json()) + 1
        if size > budget:
            break
        parts.append(e.info_json())
    return peer_list_frame(parts, ref, truncated=len(parts) < len(found))


def apply(presence: Presence, op: tuple) -> None:
    kind, peer_id = op[0], op[1]
    current = presence.get("r", peer_id)
    if kind == "join":
        if current is not None:
            presence.remove(current)
        _, _, role, status, meta = op
        presence.add(PeerEntry(peer_id=peer_id, room_id="r", role=role, status=status, metadata=meta, link=None, room_expires_at=0, connected_at=1.0))
    elif kind == "update" and current is not None:
        current.update(status=op[2], metadata=op[3])
    elif kind == "leave" and current is not None:
        presence.remove(current)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, queries=st.lists(st.tuples(query, st.sampled_from([None, *IDS]), st.integers(1, 6)), min_size=1, max_size=6), between=ops)
def test_index_matches_the_scan_on_random_rooms(ops, queries, between):
    presence = Presence()
    for op in ops:
        apply(presence, op)
    for round_ in range(2):  # the second round reads cached replies, then changes the room and reads again
        room = presence.room("r")
        entries = room.entries() if room else []
        for q, exclude, limit in queries:
            expected = scan(entries, q, exclude)
            got = [e.peer_id for e in room.find(q, exclude=exclude)] if room else []
            assert got == expected
            if room:
                assert [e.peer_id for e in room.find(q, exclude=exclude, limit=limit)] == expected[:limit]
                for budget in (10_000, 150):
                    for _ in range(2):  # miss, then hit
                        assert room.peer_list(q, exclude=exclude, ref="x", limit=limit, budget=budget) == scan_frame(entries, q, exclude, "x", limit, budget)
        if round_ == 0:
            for op in between:
                apply(presence, op)


def test_cached_reply_follows_every_kind_of_change():
    presence = Presence()
    gpus = lambda free: {"gpus": [{"memory_free_mb": free}], "labels": {"site": "a"}}  # noqa: E731
    a = PeerEntry(peer_id="a", room_id="r", role="worker", status="available", metadata=gpus(10), link=None, room_expires_at=0)
    presence.add(a)
    room = presence.room("r")
    q = Query.of(role="worker", labels={"site": "a"})

    def ids() -> list[str]:
        import json

        return [p["peer_id"] for p in json.loads(room.peer_list(q, exclude="me", ref=None, limit=10, budget=100_000))["peers"]]

    assert ids() == ["a"]
    b = PeerEntry(peer_id="b", room_id="r", role="worker", status="available", metadata=gpus(20), link=None, room_expires_at=0)
    presence.add(b)
    assert ids() == ["b", "a"]  # join
    a.update(metadata=gpus(30))
    assert ids() == ["a", "b"]  # metadata (rank) change
    a.update(status="busy")
    assert ids() == ["b", "a"]  # status change: available first
    b.update(metadata={"gpus": [], "labels": {"site": "z"}})
    assert ids() == ["a"]  # label change
    presence.remove(a)
    assert ids() == []  # leave
    version = room.version
    b.update(status=b.status, metadata=dict(b.metadata))
    assert room.version == version  # a no-op update keeps the cache


def test_peer_list_is_byte_identical_to_the_protocol_encoder():
    presence = Presence()
    for i in range(5):
        presence.add(PeerEntry(peer_id=f"w{i}", room_id="r", role="worker", status="available", metadata={"gpus": [{"memory_free_mb": i}], "labels": {"é": "ü"}}, link=None, room_expires_at=0))
    room = presence.room("r")
    entries = sorted(room.entries(), key=rank)
    frame = room.peer_list(Query.of(role="worker"), exclude=None, ref="r1", limit=3, budget=100_000)
    assert frame == PeerList(peers=[e.info() for e in entries[:3]], ref="r1", truncated=True).encode()


def test_hostile_query_variety_cannot_grow_the_cache_without_bound():
    from sleap_rtc_plugin.coordinator import discovery

    room = RoomIndex()
    room.add(PeerEntry(peer_id="w", room_id="r", role="worker", status="available", metadata={}, link=None, room_expires_at=0))
    for i in range(10 * discovery.CACHE_ENTRIES_PER_ROOM):
        room.peer_list(Query.of(min_gpu_memory_mb=i), exclude=None, ref=None, limit=5, budget=1000)
        assert len(room._cache) <= discovery.CACHE_ENTRIES_PER_ROOM
