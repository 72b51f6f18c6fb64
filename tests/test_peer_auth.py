"""Room-secret authentication between two real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest

from fixtures_peer import auth_pair, open_pair
from sleap_rtc_plugin.peer import AuthError, LinkClosedError, PeerLink, accept, connect
from sleap_rtc_plugin.peer import auth
from sleap_rtc_plugin.protocol.peer import JobSubmit, PeerError

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def pair():
    client, worker = await open_pair()
    yield client, worker
    await client.close()
    await worker.close()


async def test_correct_secret_authenticates_both_and_messages_flow(pair):
    client, worker = pair
    assert await auth_pair(client, worker, b"s3cret", b"s3cret") == ["psk", "psk"]
    assert client.remote_peer_id == "w1" and worker.remote_peer_id == "c1"
    await client.send(JobSubmit(job_id="j1", kind="train", package_sha256="0" * 64, package_name="p.zip"))
    msg = await worker.recv(timeout=10)
    assert isinstance(msg, JobSubmit) and msg.job_id == "j1"


async def test_wrong_secret_is_refused_on_both_sides(pair):
    client, worker = pair
    c, w = await auth_pair(client, worker, b"wrong", b"right")
    assert isinstance(c, AuthError) and c.code == "bad_secret" and "wrong secret" in str(c)
    assert isinstance(w, AuthError) and w.code == "bad_secret"
    await asyncio.wait_for(worker.closed.wait(), 10)
    assert not worker.authenticated and not client.authenticated


async def test_worker_requiring_secret_refuses_client_without_one(pair):
    client, worker = pair
    c, w = await auth_pair(client, worker, None, b"right")
    assert isinstance(c, AuthError) and c.code == "missing_secret"
    assert "--room-secret" in str(c) and "SLEAP_RTC_ROOM_SECRET_" in str(c)
    assert isinstance(w, AuthError) and w.code == "missing_secret"


async def test_legacy_mode_without_secrets(pair, caplog):
    client, worker = pair
    auth._legacy_warned = False
    with caplog.at_level("WARNING"):
        assert await auth_pair(client, worker, None, None) == ["legacy", "legacy"]
    assert "legacy mode" in caplog.text
    await client.send(JobSubmit(job_id="j", kind="track", package_sha256="1" * 64, package_name="p"))
    assert (await worker.recv(timeout=10)).job_id == "j"


async def test_client_with_secret_refuses_worker_without_one(pair):
    client, worker = pair
    c, w = await auth_pair(client, worker, b"s", None)
    assert isinstance(c, AuthError) and c.code == "worker_unauthenticated"
    assert w == "legacy"  # the worker has nothing to check; the client walks away
    await asyncio.wait_for(worker.closed.wait(), 10)


async def test_control_messages_before_auth_are_refused(pair):
    client, worker = pair
    client._send(JobSubmit(job_id="early", kind="train", package_sha256="0" * 64, package_name="p"))
    client.transport.send_text("{not json")
    client.transport.send_text(json.dumps({"type": "no_such_type", "v": 1}))
    client.transport.channel.send(b"\x00" * 40)
    errors = [await client._next_auth_frame(10) for _ in range(4)]
    assert all(isinstance(e, PeerError) for e in errors)
    assert [e.code for e in errors] == ["unauthenticated", "malformed", "unknown_type", "unauthenticated"]
    with pytest.raises(AuthError):
        await client.send(JobSubmit(job_id="x", kind="train", package_sha256="0" * 64, package_name="p"))
    # the loop survived: a normal handshake still works afterwards
    client._auth_inbox = asyncio.Queue()
    assert await auth_pair(client, worker, b"k", b"k") == ["psk", "psk"]
    assert worker._inbox.empty()


async def test_malformed_frame_after_auth_gets_error_reply_and_loop_survives(pair):
    client, worker = pair
    await auth_pair(client, worker, b"k", b"k")
    client.transport.send_text(json.dumps({"type": "job_submit", "v": 1, "job_id": "j"}))
    err = await client.recv(timeout=10)
    assert isinstance(err, PeerError) and err.code == "missing_field"
    await client.send(JobSubmit(job_id="ok", kind="train", package_sha256="0" * 64, package_name="p"))
    assert (await worker.recv(timeout=10)).job_id == "ok"


async def test_relay_in_the_middle_cannot_pass_authentication():
    """A relay terminating two separate DTLS sessions and passing auth frames verbatim fails."""
    worker_task = None
    mitm_b: PeerLink | None = None

    async def mitm_relays_offer(offer: dict) -> dict:
        nonlocal mitm_b
        answer_to_client, mitm_a_task = await accept(offer, role="worker", peer_id="w1", allow_loopback=True)

        async def offer_to_worker(offer2: dict) -> dict:
            nonlocal worker_task
            answer, worker_task = await accept(offer2, role="worker", peer_id="w1", allow_loopback=True)
            return answer

        mitm_b = await connect(offer_to_worker, role="client", peer_id="c1", allow_loopback=True)
        relay_state["a"] = mitm_a_task
        return answer_to_client

    relay_state: dict = {}
    client = await connect(mitm_relays_offer, role="client", peer_id="c1", allow_loopback=True)
    mitm_a = await relay_state["a"]
    worker = await worker_task

    async def pipe(src: PeerLink, dst: PeerLink):
        while True:
            try:
                msg = await src._next_auth_frame(30)
            except (AuthError, LinkClosedError):
                return
            dst._send(msg)

    pipes = [asyncio.ensure_future(pipe(mitm_a, mitm_b)), asyncio.ensure_future(pipe(mitm_b, mitm_a))]
    try:
        assert client.remote_fingerprint != worker.local_fingerprint
        c, w = await auth_pair(client, worker, b"shared", b"shared")
        assert isinstance(w, AuthError) and w.code == "bad_secret"
        assert isinstance(c, AuthError)
        assert not client.authenticated and not worker.authenticated
    finally:
        for p in pipes:
            p.cancel()
        for link in (client, worker, mitm_a, mitm_b):
            await link.close()


def test_proof_binds_fingerprints_role_and_nonce():
    base = dict(nonce=b"n" * 32, worker_fingerprint="AA:BB", client_fingerprint="CC:DD")
    p = auth.proof(b"k", prover="client", **base)
    assert p != auth.proof(b"k", prover="worker", **base)
    assert p != auth.proof(b"k", prover="client", **{**base, "client_fingerprint": "CC:DE"})
    assert p != auth.proof(b"k", prover="client", **{**base, "nonce": b"m" * 32})
    assert p != auth.proof(b"j", prover="client", **base)
    assert p == auth.proof(b"k", prover="client", **base)
