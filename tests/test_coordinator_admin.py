"""Administration on a live coordinator: admin auth, worker tokens, labels, drain, audit, CLI."""

from __future__ import annotations

import argparse
import asyncio

import pytest
from fixtures_queue import admin_token, eventually, gpu, peer, qroom, qserver  # noqa: F401

from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorError, admin_request
from sleap_rtc_plugin.coordinator import admin_cli
from sleap_rtc_plugin.coordinator.store import hash_token

SPEC = {"kind": "train"}


async def test_admin_requests_need_a_valid_admin_token(qserver, admin_token):
    for bad in ("sat_wrong", admin_token + "x"):
        with pytest.raises(CoordinatorError) as err:
            await admin_request(qserver.url, bad, "workers")
        assert err.value.code == "bad_admin_token"
    assert await admin_request(qserver.url, admin_token, "workers") == []
    await qserver.flush_audit()
    failed = await qserver.jobstore.read_audit(kind="admin_auth_failed")
    assert len(failed) == 2 and failed[0]["subject"] == "workers"
    rows = await qserver.store._run(lambda: qserver.store._db.execute("SELECT token_hash FROM admin_tokens").fetchall())
    assert rows == [(hash_token(admin_token),)]  # stored hashed only


async def test_worker_token_registration_labels_rotation_and_revocation(qserver, qroom, admin_token):
    room_id = qroom[0]
    created = await admin_request(qserver.url, admin_token, "token_create", {"room_id": room_id, "worker_id": "gpu-x", "labels": {"gpu": "a100-80g"}})
    token = created["token"]
    assert token.startswith("swt_") and created["worker_id"] == "gpu-x"
    with pytest.raises(CoordinatorError) as err:
        await admin_request(qserver.url, admin_token, "token_create", {"room_id": room_id, "worker_id": "gpu-x"})
    assert err.value.code == "token_exists"

    def worker(tok: str, **kw) -> CoordinatorClient:
        return CoordinatorClient(qserver.url, room_id=room_id, token=tok, role="worker", reconnect=False, **kw)

    observer = CoordinatorClient(qserver.url, room_id=room_id, token=qroom[1], role="client")
    await observer.start()
    w = worker(token, metadata={**gpu(8000), "labels": {"gpu": "gtx", "site": "b"}})
    await w.start()
    try:
        assert w.peer_id == "gpu-x"  # the token names the worker
        (info,) = await observer.discover()
        assert info.metadata["labels"] == {"gpu": "a100-80g", "site": "b"}  # the admin's label wins
        await w.update(metadata={**gpu(8000), "labels": {"gpu": "fake"}})  # re-publishing cannot overwrite it
        (info,) = await observer.discover()
        assert info.metadata["labels"] == {"gpu": "a100-80g"}

        # The id is bound to the token: the room token cannot take it over later.
        await w.close()
        await eventually(lambda: qserver.presence.get(room_id, "gpu-x") is None)
        with pytest.raises(CoordinatorError) as err:
            await worker(qroom[1], peer_id="gpu-x").start()
        assert err.value.code == "token_required"
        with pytest.raises(CoordinatorError) as err:
            await worker(token, peer_id="someone-else").start()
        assert err.value.code == "bad_token"

        # Re-registering keeps the admin's labels.
        w = worker(token, metadata={"labels": {"gpu": "fake"}})
        await w.start()
        (info,) = await observer.discover()
        assert info.metadata["labels"] == {"gpu": "a100-80g"}

        rotated = await admin_request(qserver.url, admin_token, "token_rotate", {"worker_id": "gpu-x"})
        assert rotated["token"] != token
        assert w.connected  # rotation does not cut a running worker off
        await w.close()
        await eventually(lambda: qserver.presence.get(room_id, "gpu-x") is None)
        with pytest.raises(CoordinatorError) as err:
            await worker(token).start()
        assert err.value.code == "bad_token"
        w = worker(rotated["token"])
        await w.start()
        assert w.peer_id == "gpu-x"

        result = await admin_request(qserver.url, admin_token, "token_revoke", {"worker_id": "gpu-x"})
        assert result["disconnected"] is True
        await eventually(lambda: not w.connected)
        with pytest.raises(CoordinatorError) as err:
            await worker(rotated["token"]).start()
        assert err.value.code == "bad_token"
        # With the token gone, the id is free for room-token registration again.
        free = worker(qroom[1], peer_id="gpu-x")
        await free.start()
        await free.close()
    finally:
        await w.close()
        await observer.close()

    await qserver.flush_audit()
    audit = await qserver.jobstore.read_audit(limit=500)
    kinds = [e["kind"] for e in audit]
    for kind in ("admin_token_create", "admin_token_rotate", "admin_token_revoke", "register", "register_failed"):
        assert kind in kinds, kind
    failures = [e for e in audit if e["kind"] == "register_failed"]
    assert {e["detail"]["code"] for e in failures} == {"token_required", "bad_token"}
    assert all(token not in str(e) and rotated["token"] not in str(e) for e in audit)
    stored = await qserver.store._run(lambda: qserver.store._db.execute("SELECT token_hash FROM workers").fetchall())
    assert stored == [(None,)]


async def test_drain_survives_heartbeats_and_reconnects(qserver, qroom, peer, admin_token):
    w = await peer("worker", peer_id="w1", metadata=gpu(8000))
    client = await peer("client", peer_id="c1")
    await client.queue_submit("running", SPEC)
    await client.next_push("queue_update", job_id="running", timeout=10, where=lambda m: m.state == "dispatched")
    await w.report("running", 1, "accepted")
    await w.update(status="busy")
    await w.report("running", 1, "running")

    assert (await admin_request(qserver.url, admin_token, "drain", {"worker_id": "w1"}))["job"] == "running"
    await client.queue_submit("next", SPEC)
    await asyncio.sleep(5 * 0.2)  # several heartbeats
    # The current job finishes normally...
    await w.report("running", 1, "succeeded")
    await client.next_push("queue_update", job_id="running", timeout=10, where=lambda m: m.state == "results_ready")
    await w.update(status="available")
    entry = qserver.presence.get(qroom[0], "w1")
    assert entry.status == "draining"
    # ...but nothing new arrives, whatever the worker says, and across a reconnect.
    w._ws.transport.abort()
    await eventually(lambda: w.reconnects == 1 and w.connected)
    await w.update(status="available")
    await asyncio.sleep(5 * 0.2)
    assert qserver.presence.get(qroom[0], "w1").status == "draining"
    assert qserver.queue.jobs["next"].state == "queued"
    with pytest.raises(CoordinatorError) as err:
        await client.relay("w1", "offer", {"offer": {"sdp": "v=0", "type": "offer"}, "intent": "submit", "job_id": "direct"})
    assert err.value.code == "worker_draining"
    await client.relay("w1", "offer", {"offer": {"sdp": "v=0", "type": "offer"}, "intent": "attach", "job_id": "running"})  # results stay reachable
    workers = await admin_request(qserver.url, admin_token, "workers")
    assert [(x["worker_id"], x["drained"], x["status"]) for x in workers] == [("w1", True, "draining")]

    await admin_request(qserver.url, admin_token, "undrain", {"worker_id": "w1"})
    update = await client.next_push("queue_update", job_id="next", timeout=10, where=lambda m: m.state == "dispatched")
    assert update.worker_id == "w1"


async def test_admin_labels_and_jobs_listing(qserver, qroom, peer, admin_token):
    await peer("worker", peer_id="w1", metadata={**gpu(8000), "labels": {"gpu": "t4"}})
    client = await peer("client", peer_id="c1")
    await client.queue_submit("wants-a100", SPEC, labels={"gpu": "a100*"})
    await asyncio.sleep(0.5)
    jobs = await admin_request(qserver.url, admin_token, "jobs", {"room_id": qroom[0]})
    assert [(j["job_id"], j["state"], j["position"]) for j in jobs] == [("wants-a100", "queued", 0)]
    await admin_request(qserver.url, admin_token, "labels", {"worker_id": "w1", "labels": {"gpu": "a100-40g"}})
    update = await client.next_push("queue_update", job_id="wants-a100", timeout=10, where=lambda m: m.state == "dispatched")
    assert update.worker_id == "w1"
    with pytest.raises(CoordinatorError) as err:
        await admin_request(qserver.url, admin_token, "drain", {"worker_id": "ghost"})
    assert err.value.code == "unknown_worker"
    with pytest.raises(CoordinatorError) as err:
        await admin_request(qserver.url, admin_token, "jobs", {"limit": 0})
    assert err.value.code == "bad_value"
    result = await admin_request(qserver.url, admin_token, "cancel", {"job_id": "wants-a100"})
    assert result == {"job_id": "wants-a100", "state": "cancelled"}


async def test_admin_cli_end_to_end(qserver, qroom, peer, capsys, tmp_path):
    db = qserver.store.db_path
    parser = argparse.ArgumentParser()
    admin_cli.add_arguments(parser)

    async def cli(*argv: str) -> tuple[int, str, str]:
        code = await admin_cli.run_async(parser.parse_args(list(argv)))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = await cli("init", "--db", str(db), "--name", "ops")
    assert code == 0
    token = out.split("admin token: ", 1)[1].split()[0]
    common = ["--server", qserver.url, "--admin-token", token]

    code, out, _ = await cli("token", "create", "gpu-7", "--room-id", qroom[0], "--label", "gpu=a100", *common)
    assert code == 0 and "swt_" in out
    wtoken = out.split("token:", 1)[1].split()[0]
    w = CoordinatorClient(qserver.url, room_id=qroom[0], token=wtoken, role="worker")
    await w.start()
    try:
        code, out, _ = await cli("drain", "gpu-7", *common)
        assert code == 0
        code, out, _ = await cli("workers", *common)
        assert "gpu-7" in out and "draining" in out and "gpu=a100" in out
        code, out, _ = await cli("audit", "--kind", "admin_*", *common)
        assert "admin_token_create" in out and "admin_drain" in out and "admin:ops" in out
        code, _, err = await cli("workers", "--server", qserver.url, "--admin-token", "sat_nope")
        assert code == 1 and "admin token not recognised" in err
        with pytest.raises(SystemExit, match="key=value"):
            await cli("labels", "gpu-7", "novalue", *common)
    finally:
        await w.close()
