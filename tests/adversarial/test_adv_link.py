"""Attacks on a worker's link before authentication, on ids used as paths, and on
the credentials a worker prints (issue 13 items 1, 4, 11 and "secure by default").

Every attack runs against a live worker (real coordinator on loopback, real aiortc
link) from a hostile room member built from the real ``CoordinatorClient`` and
``peer.connection.connect``, sending crafted offers and frames.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pty
import select
import stat
import subprocess
import sys
import time
import zipfile
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from fixtures_e2e import WorkerProcess, coordinator, make_worker, project, room, spec_for  # noqa: F401
from sleap_rtc_plugin.client.api import ConnectionSpec, RemoteError, list_workers, submit_training
from sleap_rtc_plugin.coordinator.client import CoordinatorClient, CoordinatorError
from sleap_rtc_plugin.errors import UserError
from sleap_rtc_plugin.peer import secrets
from sleap_rtc_plugin.peer.connection import connect
from sleap_rtc_plugin.peer.link import MAX_PREAUTH_FRAMES
from sleap_rtc_plugin.protocol.offer import PeerOffer, SdpOffer
from sleap_rtc_plugin.protocol.peer import Hello, JobSubmit, PeerError
from sleap_rtc_plugin.protocol.session_string import SessionString
from sleap_rtc_plugin.util.ratelimited_log import RepeatFilter
from sleap_rtc_plugin.worker.agent import Worker, WorkerOptions


@pytest.fixture
def quick_package(tmp_path):
    """A package every worker refuses at once: proves a client got through to a job."""
    path = tmp_path / "empty.slp.training_job.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("jobs.yaml", "training: []\ninference: []\n")
    return path


@asynccontextmanager
async def room_member(coordinator, room):  # noqa: F811
    """A hostile client: a real, registered member of the room (it has the token)."""
    coord = CoordinatorClient(coordinator.url, room_id=room[0], token=room[1], role="client")
    await coord.start()
    try:
        yield coord
    finally:
        await coord.close()


def valid_offer(job_id: str = "valid-job"):
    return lambda sdp: PeerOffer(offer=SdpOffer(sdp=sdp["sdp"], type=sdp["type"]), job_id=job_id).to_dict()


async def open_link(coord: CoordinatorClient, worker: Worker, payload=None):
    """Offer the worker a link with a crafted relay payload (``payload(sdp) -> dict``)."""
    payload = payload or valid_offer()

    async def send_offer(sdp: dict) -> dict:
        await coord.relay(worker.peer_id, "offer", payload(sdp))
        return (await coord.next_relay(kind="answer", source=worker.peer_id, timeout=20)).payload

    return await connect(send_offer, role="client", peer_id=coord.peer_id or "", allow_loopback=True, timeout=20)


def made_under(data_dir: Path) -> list[str]:
    """What exists under the per-job folders of the data dir."""
    return sorted(str(p.relative_to(data_dir)) for sub in ("incoming", "jobs") if (data_dir / sub).exists() for p in (data_dir / sub).rglob("*"))


# --- item 1: job ids used as paths ------------------------------------------------


async def test_offer_with_a_path_as_job_id_is_refused_and_makes_nothing(coordinator, room, make_worker, sentinel):  # noqa: F811
    worker = await make_worker("target", data_dir=sentinel.data_dir)
    hostile_ids = [str(sentinel.root / "home" / "pwned"), "../../x", "a/b", "..", "a\x00b", "x" * 300, ""]
    async with room_member(coordinator, room) as coord:
        for job_id in hostile_ids:
            with pytest.raises(CoordinatorError) as info:
                await open_link(coord, worker, lambda sdp, job_id=job_id: {"offer": sdp, "intent": "submit", "job_id": job_id})
            assert info.value.code in ("bad_offer", "bad_value"), (job_id, info.value)
            assert "job_id" in info.value.message and "letters, digits" in info.value.message
        with pytest.raises(CoordinatorError) as info:  # a well-formed id, a garbage SDP
            await open_link(coord, worker, lambda sdp: {"offer": {"sdp": 5, "type": "offer"}, "job_id": "ok"})
        assert info.value.code in ("bad_offer", "wrong_type")
    assert made_under(sentinel.data_dir) == []
    assert worker.state.status.value == "available" and not worker.links
    sentinel.assert_unchanged()


async def test_authenticated_job_submit_with_a_traversing_id_is_refused_at_decode(coordinator, room, make_worker, sentinel):  # noqa: F811
    worker = await make_worker("target", data_dir=sentinel.data_dir)
    async with room_member(coordinator, room) as coord:
        link = await open_link(coord, worker)
        try:
            assert await link.authenticate(secrets.lookup_secret(room[0])) == "psk"  # a member who knows the secret
            frame = JobSubmit(job_id="ok", kind="train", package_sha256="0" * 64, package_name="p.zip").to_dict()
            for job_id in ["../../other-project", str(sentinel.root / "home"), "a/b"]:
                link.transport.send_text(json.dumps({**frame, "job_id": job_id}))
                reply = await link.recv(timeout=10)
                assert isinstance(reply, PeerError) and reply.code == "bad_value" and "job_id" in reply.message
        finally:
            await link.close()
    assert [p for p in made_under(sentinel.data_dir) if p != "incoming/valid-job"] == []
    sentinel.assert_unchanged()


# --- item 4: what a stranger gets before authenticating ------------------------------


async def test_unauthenticated_link_reserves_nothing_and_makes_nothing(coordinator, room, make_worker, sentinel, quick_package, project):  # noqa: F811
    worker = await make_worker("target", data_dir=sentinel.data_dir)
    async with room_member(coordinator, room) as coord:
        silent = [await open_link(coord, worker, valid_offer(f"silent-{i}")) for i in range(4)]
        try:
            for link in silent:  # the worker is in its handshake on every one of them
                assert isinstance(await link._next_auth_frame(10), Hello)
            with pytest.raises(CoordinatorError) as info:  # a fifth one from the same member waits its turn
                await open_link(coord, worker, valid_offer("silent-4"))
            assert info.value.code == "too_many_offers" and "try again" in info.value.message
            assert worker.state.status.value == "available"
            assert [w.status for w in await list_workers(spec_for(worker))] == ["available"]
            assert made_under(sentinel.data_dir) == []
            handle = submit_training(quick_package, spec_for(worker), project_dir=project)  # an honest client still gets in
            with pytest.raises(RemoteError) as info:
                await handle.result()
            assert info.value.code == "job_failed", info.value
        finally:
            for link in silent:
                await link.close()
    assert "silent-0" not in " ".join(made_under(sentinel.data_dir))
    sentinel.assert_unchanged()


async def test_link_that_does_not_authenticate_in_time_is_closed(coordinator, room, make_worker, sentinel):  # noqa: F811
    worker = await make_worker("target", data_dir=sentinel.data_dir, preauth_timeout=3.0)
    async with room_member(coordinator, room) as coord:
        link = await open_link(coord, worker)
        try:
            await asyncio.wait_for(link.closed.wait(), 20)
        finally:
            await link.close()
    assert "did not authenticate within 3 s" in (worker.last_error or "")
    assert worker.state.status.value == "available" and made_under(sentinel.data_dir) == []
    sentinel.assert_unchanged()


async def test_preauth_frame_flood_closes_the_link_with_few_log_lines(coordinator, room, make_worker, sentinel, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    worker = await make_worker("target", data_dir=sentinel.data_dir)
    async with room_member(coordinator, room) as coord:
        link = await open_link(coord, worker)
        try:
            sent = 0
            for _ in range(2000):
                if link.closed.is_set():
                    break
                try:
                    link.transport.send_text("not json at all")
                except Exception:
                    break
                sent += 1
                if sent % 100 == 0:
                    await asyncio.sleep(0)
            await asyncio.wait_for(link.closed.wait(), 20)
        finally:
            await link.close()
    from_worker = [r for r in caplog.records if r.name.startswith("sleap_rtc_plugin") and "refused" in r.getMessage()]
    assert sent > MAX_PREAUTH_FRAMES and len(from_worker) <= 5, [r.getMessage() for r in from_worker]
    assert any(f"{worker.peer_id}: more than {MAX_PREAUTH_FRAMES} frames before authentication" in r.getMessage() for r in caplog.records)
    assert worker.state.status.value == "available" and made_under(sentinel.data_dir) == []
    sentinel.assert_unchanged()


def test_repeated_log_lines_collapse():
    now = [0.0]
    filt = RepeatFilter(10.0, clock=lambda: now[0])
    record = lambda arg: logging.LogRecord("x", logging.WARNING, __file__, 1, "refused %s before authentication", (arg,), None)  # noqa: E731
    passed = [filt.filter(record(i)) for i in range(1000)]
    assert passed.count(True) == 1
    now[0] = 11.0
    last = record("job_submit")
    assert filt.filter(last) and "(repeated 999 times in the last 10s)" in last.getMessage()


# --- secure by default ----------------------------------------------------------------


async def test_worker_that_creates_its_room_makes_a_secret_and_the_session_string_carries_it(tmp_path, quick_package, project):
    worker = Worker(WorkerOptions(embedded_port=0, embedded_db=str(tmp_path / "c.sqlite3"), data_dir=tmp_path / "w", status_port=None, ice_loopback=True))
    await worker.start()
    try:
        session = SessionString.decode(worker.session_string())
        assert session.secret and worker.secret == session.secret.encode()
        creds = Path(secrets.config_dir()) / secrets.CREDENTIALS_FILE
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600 and secrets.lookup_secret(session.room_id) == worker.secret
        # the session string alone authenticates (PSK); the job itself is refused as a bad package
        with pytest.raises(RemoteError) as info:
            await submit_training(quick_package, ConnectionSpec(session_string=session.encode(), ice_loopback=True), project_dir=project).result()
        assert info.value.code == "job_failed", info.value
        # the same string without the secret, and a wrong secret stored on this machine: refused
        secrets.store_secret(session.room_id, "not-the-secret")
        with pytest.raises(RemoteError) as info:
            await submit_training(quick_package, ConnectionSpec(session_string=session.without_secret().encode(), ice_loopback=True),
                                  project_dir=project).result()
        assert "secret" in str(info.value).lower()
    finally:
        await worker.stop()


async def test_worker_joining_a_room_without_a_secret_refuses_to_start(coordinator, room, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.delenv(secrets.env_var_name(room[0]), raising=False)
    options = dict(server_url=coordinator.url, room_id=room[0], token=room[1], data_dir=tmp_path / "w", status_port=None, ice_loopback=True)
    worker = Worker(WorkerOptions(**options))
    with pytest.raises(UserError) as info:
        await worker.start()
    text = str(info.value)
    assert "\n" not in text and "--room-secret" in text and "--insecure-no-secret" in text and room[0] in text
    assert worker.coordinator is None and not (tmp_path / "w" / "jobs").exists()
    assert await list_workers(ConnectionSpec(server_url=coordinator.url, room_id=room[0], token=room[1])) == []
    legacy = Worker(WorkerOptions(**options, insecure_no_secret=True))
    await legacy.start()
    try:
        assert legacy.secret is None and SessionString.decode(legacy.session_string()).secret is None
        assert "No room secret set" in legacy.banner()
    finally:
        await legacy.stop()


def test_old_session_strings_still_decode():
    old = SessionString("room1", "tok", "w-1", "ws://h:1")
    assert SessionString.decode(old.encode()) == old
    new = SessionString("room1", "tok", "w-1", "ws://h:1", "s3cret")
    assert SessionString.decode(new.encode()).secret == "s3cret" and SessionString.decode(new.encode()).without_secret() == old


# --- item 11: the banner and journald ----------------------------------------------------


def test_banner_without_a_terminal_masks_credentials_and_writes_an_owner_only_file(tmp_path):
    worker = WorkerProcess(tmp_path / "data")
    try:
        text = "".join(worker.output)
        session = SessionString.decode(worker.session_string)
        assert session.secret and session.token
        assert session.token not in text and session.secret not in text and session.encode() not in text
        assert "room token:  ******" in text and f"session file: {tmp_path / 'data' / 'session-string.txt'}" in text
        assert stat.S_IMODE(worker.session_file.stat().st_mode) == 0o600
    finally:
        assert worker.stop() == 0


def test_banner_on_a_terminal_shows_the_full_session_string(tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sleap_rtc_plugin", "worker", "--port", "0", "--status-port", "0", "--data-dir", str(tmp_path / "data")],
        stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env={**os.environ, "SLEAP_RTC_ICE_LOOPBACK": "1"},
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 120
    try:
        while b"--pkg-path" not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 1.0)[0]:
                chunk = os.read(master, 4096)
                if not chunk:
                    break
                out += chunk
    except OSError:
        pass
    finally:
        proc.terminate()
        proc.wait(30)
        os.close(master)
    text = out.decode(errors="replace")
    line = next(line for line in text.splitlines() if "--session-string" in line)
    session = SessionString.decode(line.split("--session-string", 1)[1].split()[0])
    assert session.secret and f"room token:  {session.token}" in text
    assert not (tmp_path / "data" / "session-string.txt").exists()
