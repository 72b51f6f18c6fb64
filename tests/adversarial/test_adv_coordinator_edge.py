"""Attacks on the coordinator's edge (issue 13 items 3, 5, 8 and 11's coordinator part).

Every test runs a real coordinator on 127.0.0.1 and attacks it over real websockets
with frames built from the real protocol module and client classes; each asserts the
refusal (its code and message) and that the room still works / nothing was stored.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import logging
import math
import os
import re
import ssl
import stat
import sys
import urllib.request
import zlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from fixtures_coordinator import Raw, coordinator, make_client, raw, room  # noqa: F401
from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorServer
from sleap_rtc_plugin.coordinator.cli import run_room_async
from sleap_rtc_plugin.coordinator.client import CoordinatorError, create_room
from sleap_rtc_plugin.coordinator.limits import EdgeLimits
from sleap_rtc_plugin.coordinator.tls import TLS_CA_ENV, server_context, set_default_ca
from sleap_rtc_plugin.worker.agent import Worker, WorkerOptions

pytestmark = pytest.mark.timeout(120)


# --- item 3: metadata values that used to take the room down ----------------------------

POISON = [
    {"gpus": [{"memory_free_mb": math.inf}]},
    {"gpus": [{"memory_free_mb": math.nan}]},
    {"gpus": [{"memory_free_mb": -math.inf}]},
    {"gpus": [{"memory_free_mb": 1e308}]},
    {"gpus": [{"memory_total_mb": 10**30}]},
    {"gpus": [{"memory_free_mb": 8000}] * 65},
    {"blob": list(range(65))},
    {"deep": [[[[[1]]]]]},
    {"hostname": "x" * 5000},
    {"labels": {"../x": "a"}},
    {"labels": {"site": "a\nforged log line"}},
    {"uptime": math.inf},
]


async def test_poisoned_metadata_is_refused_and_the_room_keeps_working(coordinator, room, raw, make_client, sentinel):  # noqa: F811
    room_id, _ = room
    # The well-behaved worker is enrolled (worker token) and real: it registers with
    # its own probed capabilities, which must still pass the new checks.
    worker_token = await coordinator.jobstore.set_worker_token(room_id, "good-gpu")
    good = Worker(
        WorkerOptions(server_url=coordinator.url, room_id=room_id, token=worker_token, name="good", labels={"site": "lab"},
                      data_dir=sentinel.data_dir, status_port=0, ice_loopback=True, room_secret="adv-edge-room-secret"),
    )
    await good.start()
    try:
        hostile = await raw()
        for bad in POISON:
            reply = await hostile.request(type="register", room_id=room_id, token=room[1], role="worker", peer_id="evil", metadata=bad, ref="reg")
            assert reply["type"] == "error" and reply["code"] == "bad_value", (bad, reply)
            assert "\n" not in reply["message"] and "register.metadata" in reply["message"], reply
        assert coordinator.presence.get(room_id, "evil") is None
        # Python's json writes and reads Infinity: a client built from the real class can send it.
        with pytest.raises(CoordinatorError) as err:
            await make_client("worker", peer_id="evil-2", metadata={"gpus": [{"memory_free_mb": math.inf}]})
        assert err.value.code == "bad_value" and "memory_free_mb" in err.value.message
        # The same socket is still open and can register properly afterwards.
        await hostile.register(room, peer_id="evil", metadata={"gpus": [{"memory_free_mb": 1000}]})

        # A registered worker cannot poison its entry by update either.
        updater = await make_client("worker", peer_id="updater", metadata={"gpus": []})
        for bad in POISON:
            with pytest.raises(CoordinatorError) as err:
                await updater.update(metadata=bad)
            assert err.value.code == "bad_value" and "update_peer.metadata" in err.value.message
        assert updater.connected
        reply = await hostile.request(type="update_peer", metadata={"gpus": [{"memory_free_mb": "Infinity"}]}, ref="u")
        assert reply["code"] == "bad_value"
        await hostile.ws.send('{"type":"update_peer","v":1,"ref":"u2","metadata":{"gpus":[{"memory_free_mb":NaN}]}}')
        assert (await hostile.recv())["code"] == "bad_value"

        # Discovery still works for everyone, with every stored value finite.
        client = await make_client("client")
        peers = {p.peer_id: p for p in await client.discover(role="worker")}
        assert set(peers) == {"good-gpu", "evil", "updater"}
        assert peers["updater"].metadata == {"gpus": []}
        assert (await client.discover(role="worker", min_gpu_memory_mb=500))[0].peer_id == "evil"

        # The queue still dispatches, to the real enrolled worker.
        await client.queue_submit("job-after-attack", {"kind": "train"}, worker_id="good-gpu")
        update = await client.next_push("queue_update", job_id="job-after-attack", where=lambda m: m.state == "dispatched", timeout=30)
        assert update.worker_id == "good-gpu"
    finally:
        await good.stop()
    sentinel.assert_unchanged()


# --- item 11: the coordinator's database is owner-only ------------------------------------


async def test_database_folder_and_files_are_owner_only_whatever_the_umask(tmp_path):
    db = tmp_path / "fresh" / "state" / "coordinator.sqlite3"
    old = os.umask(0o022)
    try:
        server = CoordinatorServer("127.0.0.1", 0, db, heartbeat_interval=0.3, heartbeat_timeout=1.5)
        await server.start()
    finally:
        os.umask(old)
    try:
        room_id, token, _ = await create_room(server.url)
        async with CoordinatorClient(server.url, room_id=room_id, token=token, role="client") as client:
            await client.discover()
        assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
    finally:
        await server.stop()
    # An existing world-readable database (an older version made it) is tightened on open.
    os.chmod(db, 0o644)
    async with CoordinatorServer("127.0.0.1", 0, db, heartbeat_interval=0.3, heartbeat_timeout=1.5):
        assert stat.S_IMODE(db.stat().st_mode) == 0o600


# --- item 8: resource exhaustion without a token ------------------------------------------


def limited_server(tmp_path, **limits) -> CoordinatorServer:
    """A coordinator that applies its per-address limits to 127.0.0.1 (the default exempts it)."""
    limits.setdefault("limit_loopback", True)
    return CoordinatorServer("127.0.0.1", 0, tmp_path / "coordinator.sqlite3", heartbeat_interval=0.3, heartbeat_timeout=1.5,
                             limits=EdgeLimits(**limits))


async def room_rows(server: CoordinatorServer) -> int:
    return await server.store._run(lambda: server.store._db.execute("SELECT COUNT(*) FROM rooms").fetchone()[0])


async def audit_rows(server: CoordinatorServer) -> list[tuple[str, str]]:
    await server.flush_audit()
    return await server.store._run(lambda: server.store._db.execute("SELECT kind, detail FROM audit").fetchall())


async def open_raw(server: CoordinatorServer) -> Raw:
    return Raw(await connect(server.url, ping_interval=None))


async def test_create_room_flood_is_rate_limited_per_address(tmp_path):
    async with limited_server(tmp_path, room_burst=5, rooms_per_hour=1, strikes_before_close=3, max_connections_per_address=6) as server:
        # One connection, a loop of create_room: the burst passes, then rate_limited, then the socket is closed.
        flood = await open_raw(server)
        replies = []
        with pytest.raises(ConnectionClosed):
            for i in range(50):
                replies.append(await flood.request(type="create_room", ttl_hours=24, ref=f"c{i}"))
        assert [r["type"] for r in replies[:5]] == ["room_created"] * 5
        refused = replies[5:]
        assert len(refused) == 3 and all(r["code"] == "rate_limited" for r in refused)
        assert re.search(r"try again in \d+ s", refused[0]["message"]) and "\n" not in refused[0]["message"]
        assert flood.ws.close_code == 4000

        # Many connections from the same address share the budget: nothing more is created.
        for _ in range(10):
            with pytest.raises(CoordinatorError) as err:
                await create_room(server.url, 24)
            assert err.value.code == "rate_limited" and "try again in" in err.value.message
        assert await room_rows(server) == 5

        # Concurrent connections per address are capped: the 7th is turned away at once.
        held = [await open_raw(server) for _ in range(6)]
        extra = await open_raw(server)
        turned_away = await extra.recv()
        assert turned_away["code"] == "rate_limited" and "too many connections" in turned_away["message"]
        with pytest.raises(ConnectionClosed):
            await extra.recv()
        assert extra.ws.close_code == 1013
        for ws in held:
            await ws.ws.close()
        # Closing them frees the slots; the room budget is still spent.
        again = await open_raw(server)
        assert (await again.request(type="create_room", ref="x"))["code"] == "rate_limited"
        await again.ws.close()
        assert await room_rows(server) == 5


async def test_wrong_token_spam_is_cut_off_and_audited_in_bounded_rows(tmp_path):
    async with limited_server(tmp_path, failed_auth_burst=4, failed_auth_per_minute=1, strikes_before_close=2) as server:
        room_id, token, _ = await server.create_room()
        worker_token = await server.jobstore.set_worker_token(room_id, "enrolled")
        admin_token = await server.jobstore.create_admin_token("it")
        before = len(await audit_rows(server))
        codes: list[str] = []
        attempts = 0
        for _ in range(20):  # connections
            spam = await open_raw(server)
            try:
                for i in range(10):
                    attempts += 1
                    kind = i % 3
                    if kind == 0:
                        reply = await spam.request(type="register", room_id=room_id, token="wrong" + "x" * i, role="worker", ref="r")
                    elif kind == 1:
                        reply = await spam.request(type="register", room_id=room_id, token=worker_token + "x", role="worker", ref="r")
                    else:
                        reply = await spam.request(type="admin", token=admin_token + "x", action="workers", args={}, ref="r")
                    codes.append(reply["code"])
            except ConnectionClosed:
                pass
        assert codes.count("bad_token") + codes.count("bad_admin_token") == 4
        assert codes[4:] and set(codes[4:]) == {"rate_limited"}
        # The real holder of the token at that address is told to wait, not let through a guessed path.
        with pytest.raises(CoordinatorError) as err:
            await CoordinatorClient(server.url, room_id=room_id, token=token, role="client", reconnect=False).start()
        assert err.value.code == "rate_limited" and "try again in" in err.value.message
        rows = (await audit_rows(server))[before:]
    rows_after_stop = await audit_rows_of(tmp_path)
    assert attempts >= 25  # 20 connections; after the first, each is turned away at once
    assert len(rows) <= 2  # the first failure of the window (and nothing per attempt)
    summaries = [json.loads(d) for k, d in rows_after_stop if k == "auth_failures_suppressed"]
    failures = [k for k, _ in rows_after_stop if k in ("register_failed", "admin_auth_failed")]
    assert len(failures) == 1 and len(summaries) == 1 and summaries[0]["count"] == 3


async def audit_rows_of(tmp_path) -> list[tuple[str, str]]:
    async with CoordinatorServer("127.0.0.1", 0, tmp_path / "coordinator.sqlite3") as server:
        return await audit_rows(server)


async def test_room_ttl_is_capped(tmp_path):
    async with limited_server(tmp_path, max_room_ttl_hours=720) as server:
        for ttl in (721, 24 * 365 * 10, math.inf, math.nan):
            with pytest.raises(CoordinatorError) as err:
                await create_room(server.url, ttl)
            assert err.value.code == "bad_value" and "720" in err.value.message
        assert await room_rows(server) == 0
        await create_room(server.url, 720)
        assert await room_rows(server) == 1


async def test_admin_only_room_creation(tmp_path):
    async with limited_server(tmp_path, room_creation="admin", limit_loopback=False) as server:
        admin_token = await server.jobstore.create_admin_token("it")
        with pytest.raises(CoordinatorError) as err:
            await create_room(server.url, 24)
        assert err.value.code == "admin_required" and "--admin-token" in err.value.message
        with pytest.raises(CoordinatorError) as err:
            await create_room(server.url, 24, admin_token=admin_token + "x")
        assert err.value.code == "bad_admin_token"
        assert await room_rows(server) == 0
        room_id, token, _ = await create_room(server.url, 24, admin_token=admin_token)
        # The CLI passes it too (flag or $SLEAP_RTC_ADMIN_TOKEN).
        args = argparse.Namespace(room_command="create", server=server.url, db=None, ttl_hours=24.0, json=True, admin_token=admin_token)
        assert await run_room_async(args) == 0
        assert await room_rows(server) == 2
        async with CoordinatorClient(server.url, room_id=room_id, token=token, role="client") as client:
            assert await client.discover() == []
        kinds = [k for k, _ in await audit_rows(server)]
        assert kinds.count("room_created") == 2 and "admin_auth_failed" in kinds


# --- item 5: TLS on the coordinator, and what a network observer sees -----------------------


def self_signed(folder: Path, name: str = "coordinator") -> tuple[Path, Path]:
    """A real self-signed certificate for 127.0.0.1 / localhost, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


class Tap:
    """A TCP proxy on 127.0.0.1 that forwards to ``port`` and records every byte both ways:
    the network observer."""

    def __init__(self, port: int):
        self.port = port
        self.seen = bytearray()
        self.streams: list[bytearray] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._pipe_pair, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _pipe_pair(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            stream = bytearray()
            self.streams.append(stream)
            try:
                while data := await src.read(65536):
                    self.seen += data
                    stream += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def decoded(self) -> bytes:
        """What an observer reads once it undoes websocket framing: unmasked, inflated
        (permessage-deflate) payloads of every stream that starts as plain HTTP."""
        return b"".join(_ws_payloads(bytes(s)) for s in self.streams)


def _ws_payloads(stream: bytes) -> bytes:
    head, sep, rest = stream.partition(b"\r\n\r\n")
    if not sep or not head.startswith((b"GET ", b"HTTP/1.1")):
        return b""
    out, pos, inflate = [head], 0, zlib.decompressobj(-15)
    while pos + 2 <= len(rest):
        b0, b1 = rest[pos], rest[pos + 1]
        size, pos = b1 & 0x7F, pos + 2
        if size == 126:
            size, pos = int.from_bytes(rest[pos:pos + 2], "big"), pos + 2
        elif size == 127:
            size, pos = int.from_bytes(rest[pos:pos + 8], "big"), pos + 8
        mask = rest[pos:pos + 4] if b1 & 0x80 else b""
        pos += len(mask)
        payload = rest[pos:pos + size]
        pos += size
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        if b0 & 0x40:  # RSV1: a compressed message
            payload = inflate.decompress(payload + b"\x00\x00\xff\xff")
        out.append(payload)
    return b"".join(out)


@pytest.fixture
def tls_files(tmp_path, monkeypatch):
    monkeypatch.delenv(TLS_CA_ENV, raising=False)
    monkeypatch.setenv("SLEAP_RTC_CONFIG", str(tmp_path / "empty.toml"))
    (tmp_path / "empty.toml").write_text("")
    set_default_ca(None)
    yield self_signed(tmp_path)
    set_default_ca(None)


async def test_wss_coordinator_hides_tokens_from_the_wire_and_refuses_what_it_cannot_trust(tmp_path, tls_files, monkeypatch):
    cert, key = tls_files
    async with CoordinatorServer("127.0.0.1", 0, tmp_path / "tls.sqlite3", heartbeat_interval=0.3, heartbeat_timeout=1.5,
                                 ssl_context=server_context(cert, key)) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        room_id, token, _ = await server.create_room()

        # No CA given: the self-signed certificate is refused, in one actionable line.
        with pytest.raises(CoordinatorError) as err:
            await CoordinatorClient(server.url, room_id=room_id, token=token, role="client", reconnect=False).start()
        assert err.value.code == "unreachable" and "cannot verify the TLS certificate" in err.value.message
        assert "--tls-ca" in err.value.message and "\n" not in err.value.message

        # Plain ws:// against the TLS port fails clearly too, and says what to use.
        with pytest.raises(CoordinatorError) as err:
            await create_room(server.url.replace("wss://", "ws://"), 24, timeout=5)
        assert err.value.code == "unreachable" and "wss://" in err.value.message

        # Trusting the certificate ($SLEAP_RTC_TLS_CA, as --tls-ca / tls_ca set it): everything works, over an observed wire.
        monkeypatch.setenv(TLS_CA_ENV, str(cert))
        tap = Tap(server.port)
        async with tap as tap_port:
            await observed_session(f"wss://127.0.0.1:{tap_port}", room_id, token)
        assert len(tap.seen) > 1000
        assert token.encode() not in tap.seen and room_id.encode() not in tap.seen and b"HTTP/1.1" not in tap.seen
        assert token.encode() not in tap.decoded()
        # /health answers over https.
        context = ssl.create_default_context(cafile=str(cert))
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"https://127.0.0.1:{server.port}/health", context=context, timeout=10).read())
        assert json.loads(body)["status"] == "ok"


async def observed_session(url: str, room_id: str, token: str) -> None:
    """What a lab does over the wire: a worker registers, a client discovers it, someone creates a room."""
    await create_room(url, 24)
    async with CoordinatorClient(url, room_id=room_id, token=token, role="worker", peer_id="w", metadata={"gpus": []}) as worker, \
            CoordinatorClient(url, room_id=room_id, token=token, role="client") as client:
        assert [p.peer_id for p in await client.discover()] == ["w"]
        assert worker.connected


async def test_without_tls_the_observer_reads_the_token(coordinator):  # noqa: F811
    """The control for the test above: the same session over ws:// shows the token on the wire."""
    room_id, token, _ = await coordinator.create_room()
    tap = Tap(coordinator.port)
    async with tap as tap_port:
        await observed_session(f"ws://127.0.0.1:{tap_port}", room_id, token)
    assert token.encode() in tap.decoded() and b'"type":"room_created"' in tap.decoded()


async def test_server_cli_serves_tls_and_warns_about_plaintext_on_a_network(tmp_path, tls_files, caplog):
    cert, key = tls_files
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sleap_rtc_plugin", "server", "--port", "0", "--db", str(tmp_path / "cli.sqlite3"),
        "--tls-cert", str(cert), "--tls-key", str(key), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SLEAP_RTC_CONFIG": str(tmp_path / "empty.toml")},
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        url = re.search(r"wss://127\.0\.0\.1:\d+", line)
        assert url, line  # it binds loopback unless told otherwise
        set_default_ca(cert)
        room_id, token, _ = await create_room(url.group(0), 24)
        async with CoordinatorClient(url.group(0), room_id=room_id, token=token, role="client") as client:
            assert await client.discover() == []
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert b"WITHOUT TLS" not in err
    # Half a TLS configuration is refused at start, in one line.
    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sleap_rtc_plugin", "server", "--port", "0", "--db", ":memory:", "--tls-cert", str(cert),
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "SLEAP_RTC_CONFIG": str(tmp_path / "empty.toml")},
    )
    _, err = await bad.communicate()
    assert bad.returncode == 2 and b"--tls-key" in err and len(err.strip().splitlines()) == 1

    # Plain ws:// on a non-loopback address: one loud WARNING saying how to fix it (listens only; no traffic).
    with caplog.at_level(logging.WARNING, logger="sleap_rtc_plugin.coordinator.server"):
        async with CoordinatorServer("0.0.0.0", 0, ":memory:", heartbeat_interval=0.3, heartbeat_timeout=1.5):
            pass
    warnings = [r.getMessage() for r in caplog.records if "WITHOUT TLS" in r.getMessage()]
    assert len(warnings) == 1 and "--tls-cert/--tls-key" in warnings[0] and "docs/lab-it.md" in warnings[0]
