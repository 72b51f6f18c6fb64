"""Garbage in, typed errors out: fuzzed frames never stop the coordinator serving."""

from __future__ import annotations

import json

import pytest
from fixtures_coordinator import live_coordinator, make_client, raw, room  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sleap_rtc_plugin.protocol.base import MAX_FRAME_BYTES
from sleap_rtc_plugin.protocol.coordinator import COORDINATOR

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

#: Codes a frame can earn; every one is documented in docs/protocol.md.
KNOWN_CODES = {
    "malformed", "unknown_type", "bad_version", "missing_field", "wrong_type", "bad_value", "oversize",
    "not_registered", "already_registered", "unexpected_type", "unknown_peer", "bad_token", "room_expired",
    "peer_id_in_use",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["type", "v", "ref", "room_id", "token", "role", "peer_id", "metadata", "status", "target", "kind", "payload",
     "source", "labels", "min_gpu_memory_mb", "limit", "ttl_hours", "ts"]
)
typed_frames = st.builds(
    lambda t, fields, v: {"type": t, **fields, **({"v": v} if v is not None else {})},
    st.sampled_from(sorted(COORDINATOR.types()) + ["", "nope", "relay\x00"]),
    st.dictionaries(field_names.filter(lambda n: n not in ("type", "v")), json_values, max_size=6),
    st.none() | json_values,
)


@pytest.fixture
async def coordinator(tmp_path):
    """Slow heartbeats: hypothesis generates examples on the event loop's thread, and on
    a loaded machine that can stall the loop longer than the liveness tests' 1.5 s."""
    async with live_coordinator(tmp_path, heartbeat_interval=5.0, heartbeat_timeout=60.0) as server:
        yield server


@pytest.fixture
async def pair(room, raw, make_client):
    """A registered fuzzing socket and a well-behaved worker/client pair beside it."""
    fuzzer = await raw()
    await fuzzer.register(room, role="client", peer_id="fuzzer")
    worker = await make_client("worker", peer_id="bystander")
    client = await make_client("client")
    return fuzzer, worker, client


async def still_serving(fuzzer, worker, client) -> None:
    await fuzzer.send(type="ping", ts=7.0)
    while (reply := await fuzzer.recv()) != {"type": "pong", "v": 1, "ts": 7.0}:
        assert reply["type"] in ("error", "ok", "room_created", "peer_list", "pong", "ice_servers"), reply
    assert "bystander" in [p.peer_id for p in await client.discover()]
    await client.relay("bystander", "offer", {"sdp": "still"})
    assert (await worker.next_relay("offer", timeout=10)).payload == {"sdp": "still"}


@FUZZ
@given(data=st.binary(max_size=2048))
async def test_binary_garbage(pair, data):
    fuzzer, _, _ = pair
    await fuzzer.ws.send(data)
    reply = await fuzzer.recv()
    assert reply["type"] == "error" and reply["code"] == "malformed"


@FUZZ
@given(text=st.text(max_size=512).filter(lambda s: not s.strip().startswith("{")))
async def test_text_garbage(pair, text):
    fuzzer, _, _ = pair
    await fuzzer.ws.send(text)
    reply = await fuzzer.recv()
    assert reply["type"] == "error" and reply["code"] == "malformed"


@FUZZ
@given(value=json_values.filter(lambda v: not isinstance(v, dict)))
async def test_json_that_is_not_an_object(pair, value):
    fuzzer, _, _ = pair
    await fuzzer.ws.send(json.dumps(value))
    reply = await fuzzer.recv()
    assert reply["type"] == "error" and reply["code"] == "malformed"


@FUZZ
@given(frame=typed_frames)
async def test_wrong_types_and_fields(pair, frame):
    fuzzer, _, _ = pair
    frame = {**frame, "ref": "fz"}
    await fuzzer.ws.send(json.dumps(frame))
    if frame["type"] in ("pong", "error"):
        return  # accepted silently by design (no error ping-pong)
    reply = await fuzzer.recv()
    if reply["type"] == "error":
        assert reply["code"] in KNOWN_CODES, reply
        assert reply["message"] and "\n" not in reply["message"]
        assert reply.get("ref") in ("fz", None)


async def test_every_fuzz_leaves_bystanders_served(pair):
    fuzzer, worker, client = pair
    for frame in (b"\x00\xff", "nope", "[]", '{"type": 5}', '{"type":"relay","target":"bystander"}', "{" * 100000):
        await fuzzer.ws.send(frame)
        reply = await fuzzer.recv()
        assert reply["type"] == "error", reply
    await still_serving(fuzzer, worker, client)


async def test_oversize_frame_is_an_error_not_a_disconnect(pair):
    fuzzer, worker, client = pair
    await fuzzer.ws.send(json.dumps({"type": "discover", "ref": "big", "pad": "x" * (MAX_FRAME_BYTES + 10)}))
    reply = await fuzzer.recv()
    assert reply["code"] == "oversize" and reply["ref"] == "big"
    await still_serving(fuzzer, worker, client)


@FUZZ
@given(frames=st.lists(typed_frames, min_size=1, max_size=5))
async def test_bystanders_survive_fuzzed_sequences(pair, frames):
    fuzzer, worker, client = pair
    for frame in frames:
        await fuzzer.ws.send(json.dumps(frame))
    await still_serving(fuzzer, worker, client)
