"""File transfer between two real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from fixtures_peer import auth_pair, fill_disk_after, flip_byte_in_frame, make_file, open_pair
from sleap_rtc_plugin.peer import AuthError, LinkClosedError, TransferError, sanitize_name
from sleap_rtc_plugin.peer import staging
from sleap_rtc_plugin.peer.transfer_core import SenderCore
from sleap_rtc_plugin.peer.transfer_send import Outgoing
from sleap_rtc_plugin.util.hashing import sha256_file

pytestmark = pytest.mark.timeout(300)


def sha(path) -> str:
    return sha256_file(path)


async def authed_pair(tmp_path, **receiver_kw):
    client, worker = await open_pair()
    assert await auth_pair(client, worker, b"k", b"k") == ["psk", "psk"]
    rx = await worker.accept_files(tmp_path / "rx", **receiver_kw)
    return client, worker, rx


@pytest.fixture
async def linked(tmp_path):
    client, worker, rx = await authed_pair(tmp_path)
    yield client, worker, rx
    await client.close()
    await worker.close()


async def test_send_file_verified_and_placed(linked, tmp_path):
    client, worker, rx = linked
    src = make_file(tmp_path / "pkg.zip", 3_000_000)
    seen = []
    sent = await client.send_file(src, name="jobs/pkg.zip", progress=lambda done, total: seen.append((done, total)))
    got = await worker.receive_file(timeout=10)
    assert sent.sha256 == got.sha256 == sha(src)
    assert got.path == (tmp_path / "rx" / "jobs" / "pkg.zip").resolve()
    assert sha(got.path) == sha(src)
    assert seen[-1] == (3_000_000, 3_000_000) and len(seen) > 5
    assert not list((tmp_path / "rx" / ".sleap-rtc-partial").iterdir())


async def test_empty_file(linked, tmp_path):
    client, worker, _ = linked
    src = tmp_path / "empty"
    src.write_bytes(b"")
    await client.send_file(src)
    got = await worker.receive_file(timeout=10)
    assert got.path.read_bytes() == b""


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "C:\\x", "C:x", "a\\b", "a\x00b", "", "a//b", ".sleap-rtc-cache/x"])
def test_sanitize_refuses_traversal(name):
    with pytest.raises(TransferError) as err:
        sanitize_name(name)
    assert err.value.code == "bad_name"


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "C:\\x", "C:/x"])
async def test_traversal_names_refused_by_receiver(linked, tmp_path, name):
    """A raw offer (bypassing the sender's own check) is refused by the receiver."""
    client, worker, rx = linked
    from sleap_rtc_plugin.protocol.transfer import FileOffer

    tid = "b" * 32
    out = Outgoing(SenderCore(tid, name, 1000, "0" * 64))
    client.transfers.sender.outgoing[tid] = out
    client._send(FileOffer(transfer_id=tid, name=name, size=1000, sha256="0" * 64))
    with pytest.raises(TransferError) as err:
        await asyncio.wait_for(out.next(), 10)
    assert err.value.code == "bad_name" and "refused file name" in str(err.value)
    assert not list(rx.partial_dir.iterdir())


async def test_symlink_escape_refused(linked, tmp_path):
    client, worker, rx = linked
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, rx.dest_dir / "link")
    src = make_file(tmp_path / "f", 1000)
    with pytest.raises(TransferError) as err:
        await client.send_file(src, name="link/evil")
    assert err.value.code == "bad_name" and not list(outside.iterdir())


async def test_cache_hit_costs_one_round_trip_and_no_bytes(linked, tmp_path):
    client, worker, _ = linked
    src = make_file(tmp_path / "model.ckpt", 300_000)
    await client.send_file(src)
    await worker.receive_file(timeout=10)
    frames = []
    client.transport.outgoing_filter = lambda b: frames.append(len(b)) or b
    sent_text = []
    original = client.transport.send_text
    client.transport.send_text = lambda t: (sent_text.append(t), original(t))[1]
    again = await client.send_file(src, name="copy/model.ckpt")
    assert again.cached and again.bytes_sent == 0 and frames == []
    assert [t for t in sent_text if '"file_' in t] and len([t for t in sent_text if '"file_' in t]) == 1
    got = await worker.receive_file(timeout=10)
    assert got.cached and sha(got.path) == sha(src)


async def test_size_limit(tmp_path):
    client, worker, _ = await authed_pair(tmp_path, max_size=10_000)
    try:
        src = make_file(tmp_path / "big", 10_001)
        with pytest.raises(TransferError) as err:
            await client.send_file(src)
        assert err.value.code == "too_large" and "at most 10000" in str(err.value)
        ok = make_file(tmp_path / "ok", 10_000)
        assert (await client.send_file(ok)).size == 10_000
    finally:
        await client.close()
        await worker.close()


async def test_corrupted_chunk_detected(linked, tmp_path):
    client, worker, rx = linked
    src = make_file(tmp_path / "data", 3_000_000)
    client.transport.outgoing_filter = flip_byte_in_frame(3)
    with pytest.raises(TransferError) as err:
        await client.send_file(src)
    assert err.value.code == "hash_mismatch"
    assert not (rx.dest_dir / "data").exists()
    assert rx.cached_path(sha(src)) is None
    client.transport.outgoing_filter = None
    sent = await client.send_file(src)
    assert sent.resumed_from == 0 and sha((await worker.receive_file(timeout=10)).path) == sha(src)


async def test_disk_full_while_writing(linked, tmp_path, monkeypatch):
    client, worker, rx = linked
    src = make_file(tmp_path / "data", 6 * 1024 * 1024)
    free_disk = fill_disk_after(monkeypatch, 5 * 1024 * 1024)
    with pytest.raises(TransferError) as err:
        await client.send_file(src)
    assert err.value.code == "disk_full" and "kept for resume" in str(err.value)
    assert not (rx.dest_dir / "data").exists()
    digest = sha(src)
    assert (rx.partial_dir / f"{digest}.part").exists()
    free_disk()
    sent = await client.send_file(src)
    # the receiver acknowledges every 4 MiB, at a chunk boundary (64 KiB, or ~256 KiB on a tuned SCTP link)
    assert 4 * 1024 * 1024 <= sent.resumed_from < 5 * 1024 * 1024
    got = await worker.receive_file(timeout=10)
    assert sha(got.path) == digest and got.resumed_from == sent.resumed_from


async def test_not_enough_free_space_refused_up_front(linked, tmp_path, monkeypatch):
    client, worker, rx = linked
    src = make_file(tmp_path / "data", 1000)
    real = staging.shutil.disk_usage
    monkeypatch.setattr(staging.shutil, "disk_usage", lambda p: real(p)._replace(free=1024))
    with pytest.raises(TransferError) as err:
        await client.send_file(src)
    assert err.value.code == "disk_full" and "MiB free" in str(err.value)


async def test_files_refused_before_auth(tmp_path):
    client, worker = await open_pair()
    try:
        await worker.accept_files(tmp_path / "rx")
        with pytest.raises(AuthError) as refused:
            await client.send_file(make_file(tmp_path / "f", 10))
        assert refused.value.code == "unauthenticated"
        from sleap_rtc_plugin.protocol.transfer import FileOffer

        client._send(FileOffer(transfer_id="a" * 32, name="f", size=10, sha256="0" * 64))
        err = await client._next_auth_frame(10)
        assert err.code == "unauthenticated"
        assert not list((tmp_path / "rx").glob("f"))
    finally:
        await client.close()
        await worker.close()


@pytest.mark.slow
async def test_50mb_transfer_resumes_after_connection_drop(tmp_path):
    size = 50 * 1024 * 1024
    src = make_file(tmp_path / "big.bin", size)
    digest = sha(src)
    client, worker, rx = await authed_pair(tmp_path)

    closing = []

    def drop_midway(done, total):
        if done >= total // 2 and not client._closing and not closing:
            closing.append(asyncio.ensure_future(client.transport.pc.close()))

    with pytest.raises(LinkClosedError) as err:
        await client.send_file(src, progress=drop_midway)
    assert "resume" in str(err.value)
    await asyncio.wait_for(worker.closed.wait(), 60)
    await client.close()
    assert not (rx.dest_dir / "big.bin").exists()

    client, worker, rx = await authed_pair(tmp_path)
    try:
        sent = await client.send_file(src)
        got = await worker.receive_file(timeout=60)
        assert sent.resumed_from > 0 and sent.bytes_sent == size - sent.resumed_from
        assert got.sha256 == digest and sha(got.path) == digest
        assert hashlib.sha256(got.path.read_bytes()).hexdigest() == digest
    finally:
        await client.close()
        await worker.close()


async def test_upload_interrupted_in_one_job_resumes_in_the_next(tmp_path, monkeypatch):
    """A worker gives every job its own folder but one partial folder: resubmitting the package resumes it."""
    partial = tmp_path / "partial"
    src = make_file(tmp_path / "pkg.slp", 6 * 1024 * 1024)
    client, worker, rx = await authed_pair(tmp_path, partial_dir=partial)
    try:
        free_disk = fill_disk_after(monkeypatch, 5 * 1024 * 1024)
        with pytest.raises(TransferError):
            await client.send_file(src)
        free_disk()
    finally:
        await client.close()
        await worker.close()
    client, worker = await open_pair()
    try:
        assert await auth_pair(client, worker, b"k", b"k") == ["psk", "psk"]
        rx2 = await worker.accept_files(tmp_path / "job-2", partial_dir=partial)
        sent = await client.send_file(src)
        got = await worker.receive_file(timeout=10)
        assert sent.resumed_from >= 4 * 1024 * 1024 and sent.bytes_sent == src.stat().st_size - sent.resumed_from
        assert got.path.parent == rx2.dest_dir.resolve() and sha(got.path) == sha(src)
        assert not list(partial.iterdir())
    finally:
        await client.close()
        await worker.close()


def test_stale_partials_swept_fresh_ones_kept(tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    old = [partial / f"{'a' * 64}.part", partial / f"{'a' * 64}.json"]
    fresh = [partial / f"{'b' * 64}.part", partial / f"{'b' * 64}.json"]
    for path in old + fresh:
        path.write_bytes(b"x")
    week_ago = os.path.getmtime(fresh[0]) - staging.PARTIAL_MAX_AGE - 60
    for path in old:
        os.utime(path, (week_ago, week_ago))
    staging.FileReceiver(tmp_path / "rx", partial_dir=partial)
    assert sorted(p.name for p in partial.iterdir()) == sorted(p.name for p in fresh)


async def test_same_content_into_one_partial_folder_from_two_links_is_busy(tmp_path):
    """Two links of one process (two jobs) never write the same content into one .part."""
    from sleap_rtc_plugin.protocol.transfer import FileOffer

    partial = tmp_path / "partial"
    rx1 = staging.FileReceiver(tmp_path / "a", partial_dir=partial)
    rx2 = staging.FileReceiver(tmp_path / "b", partial_dir=partial)
    offer = FileOffer(transfer_id="c" * 32, name="pkg.slp", size=10, sha256="d" * 64)
    staged, _ = rx1.open(offer, rx1.dest_dir / "pkg.slp")
    with pytest.raises(TransferError) as err:
        rx2.open(offer, rx2.dest_dir / "pkg.slp")
    assert err.value.code == "busy"
    staged.close(record_at=0)
    staged, _ = rx2.open(offer, rx2.dest_dir / "pkg.slp")  # free again once the first closed
    staged.close()
