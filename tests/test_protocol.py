"""The protocol module: typed decode, typed errors, and fuzzing that never escapes as a crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from sleap_rtc_plugin.protocol import COORDINATOR, MAX_FRAME_BYTES, PEER, ProtocolError
from sleap_rtc_plugin.protocol.coordinator import PeerInfo, PeerList, Register, Relay
from sleap_rtc_plugin.protocol.peer import JobResult, JobSubmit, ResultFile
from sleap_rtc_plugin.protocol.session_string import SessionString


def test_round_trip_every_registered_type_has_a_type_name():
    for registry in (COORDINATOR, PEER):
        for name, cls in registry.types().items():
            assert cls.TYPE == name


def test_round_trip_nested_dataclasses():
    msg = PeerList(peers=[PeerInfo("w1", "worker", "available", {"gpus": []}, 1.0)], ref="7")
    assert COORDINATOR.decode(msg.encode()) == msg
    res = JobResult(job_id="j", files=[ResultFile(name="m.zip", size=3, sha256="0" * 64)])
    assert PEER.decode(res.encode()) == res


@pytest.mark.parametrize(
    "frame, code",
    [
        ("not json", "malformed"),
        ("[1,2]", "malformed"),
        ('{"no_type": 1}', "malformed"),
        ('{"type": "launch_missiles"}', "unknown_type"),
        ('{"type": "register", "v": 99, "room_id": "r", "token": "t", "role": "worker"}', "bad_version"),
        ('{"type": "register", "room_id": "r", "role": "worker"}', "missing_field"),
        ('{"type": "register", "room_id": "r", "token": 5, "role": "worker"}', "wrong_type"),
        ('{"type": "register", "room_id": "r", "token": "t", "role": "admin"}', "bad_value"),
        ('{"type": "register", "room_id": "", "token": "t", "role": "worker"}', "bad_value"),
        ('{"type": "relay", "target": "x", "kind": "offer", "payload": []}', "wrong_type"),
    ],
)
def test_bad_frames_are_typed_errors(frame, code):
    with pytest.raises(ProtocolError) as info:
        COORDINATOR.decode(frame)
    assert info.value.code == code
    assert "\n" not in str(info.value)


def test_oversize_frame_is_refused_before_parsing():
    frame = json.dumps({"type": "ping", "pad": "x" * MAX_FRAME_BYTES})
    with pytest.raises(ProtocolError) as info:
        COORDINATOR.decode(frame)
    assert info.value.code == "oversize"


def test_peer_messages_are_not_coordinator_messages():
    frame = JobSubmit(job_id="j", kind="train", package_sha256="a" * 64, package_name="p.zip").encode()
    with pytest.raises(ProtocolError) as info:
        COORDINATOR.decode(frame)
    assert info.value.code == "unknown_type"


def test_relay_source_is_just_a_field_the_server_overwrites():
    relay = COORDINATOR.decode(Relay(target="w", kind="offer", payload={"sdp": "x"}, source="forged").encode())
    assert relay.source == "forged"  # decoding keeps it; the coordinator stamps the real one (tests/test_coordinator*)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    type_name=st.sampled_from(sorted(COORDINATOR.types()) + sorted(PEER.types()) + ["", "x"]),
    fields=st.dictionaries(st.sampled_from(["room_id", "token", "role", "peer_id", "target", "kind", "payload", "job_id", "files", "metadata", "v", "status", "peers", "event"]), json_values, max_size=6),
)
def test_fuzzed_frames_decode_or_raise_protocol_error(type_name, fields):
    frame = json.dumps({"type": type_name, **fields})
    for registry in (COORDINATOR, PEER):
        try:
            registry.decode(frame)
        except ProtocolError as exc:
            assert exc.code in {"malformed", "unknown_type", "bad_version", "missing_field", "wrong_type", "bad_value", "oversize"}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_fuzzed_garbage_is_a_protocol_error(raw):
    for registry in (COORDINATOR, PEER):
        with pytest.raises(ProtocolError):
            registry.decode(raw if raw not in ("{}",) else "{")


def test_session_string_round_trip_and_errors():
    s = SessionString("room1", "tok", "worker-1", "ws://127.0.0.1:8765")
    text = s.encode()
    assert text.startswith("sleap-session:")
    assert SessionString.decode(text) == s
    assert SessionString.decode(SessionString("r", "t", "p").encode()).server_url is None
    for bad in ("room1", "sleap-session:!!!", "sleap-session:" + "e30"):
        with pytest.raises(ProtocolError) as info:
            SessionString.decode(bad)
        assert info.value.code == "bad_session_string"


@pytest.mark.parametrize(
    "inputs, needle",
    [({"../clip.mp4": "a" * 64}, "plain file name"), ({"a/b.mp4": "a" * 64}, "plain file name"), ({"": "a" * 64}, "plain file name"), ({"C:clip.mp4": "a" * 64}, "plain file name"),
     ({"clip.mp4": "not-a-digest"}, "sha256"), ({f"v{i}.mp4": "a" * 64 for i in range(65)}, "at most 64")],
)
def test_job_submit_inputs_are_checked_on_decode(inputs, needle):
    frame = json.dumps({"type": "job_submit", "v": 1, "job_id": "j", "kind": "track", "package_sha256": "a" * 64, "package_name": "p.zip", "inputs": inputs})
    with pytest.raises(ProtocolError, match=needle) as info:
        PEER.decode(frame)
    assert info.value.code == "bad_value"


def test_job_submit_with_inputs_round_trips():
    msg = JobSubmit(job_id="j", kind="track", package_sha256="a" * 64, package_name="p.zip", inputs={"clip.mp4": "b" * 64})
    assert PEER.decode(msg.encode()) == msg
