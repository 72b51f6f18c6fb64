"""Shared storage: a path instead of bytes when both peers see the same mount (two tmp dirs stand for it)."""

from __future__ import annotations

import os

import pytest

from fixtures_peer import make_file, open_pair
from sleap_rtc_plugin.peer import FastPaths, TransferError
from sleap_rtc_plugin.peer.fastpath import parse_features, parse_mappings, software_string
from sleap_rtc_plugin.util.hashing import sha256_file

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def share(tmp_path):
    """The client sees the share at client/, the worker at worker/ (a second name for the same storage)."""
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "client").symlink_to(store, target_is_directory=True)
    (tmp_path / "worker").symlink_to(store, target_is_directory=True)
    return tmp_path / "client", tmp_path / "worker"


async def linked(tmp_path, client_paths: FastPaths, worker_paths: FastPaths):
    client, worker = await open_pair(client_paths=client_paths, worker_paths=worker_paths, secret=b"k")
    return client, worker, await worker.accept_files(tmp_path / "rx")


@pytest.fixture
async def pair(tmp_path):
    links = []

    async def make(client_paths, worker_paths):
        c, w, rx = await linked(tmp_path, client_paths, worker_paths)
        links.extend([c, w])
        return c, w, rx

    yield make
    for link in links:
        await link.close()


def mapping(share):
    return FastPaths(direct=False, shared_paths=((str(share[0]), str(share[1])),))


async def test_shared_path_sends_no_bytes(pair, share, tmp_path):
    paths = mapping(share)
    client, worker, rx = await pair(paths, paths)
    (share[0] / "proj").mkdir()
    src = make_file(share[0] / "proj" / "labels.pkg.slp", 2_000_000)
    frames = []
    client.transport.outgoing_filter = lambda b: frames.append(b) or b
    sent = await client.send_file(src)
    got = await worker.receive_file(timeout=10)
    assert sent.via == got.via == "shared" and sent.bytes_sent == 0 and frames == []
    assert sha256_file(got.path) == sha256_file(src) and got.path.parent == (tmp_path / "rx").resolve()
    assert not list(share[0].glob(".sleap-rtc-probe-*")), "probe removed"
    assert os.stat(src).st_mode & 0o200, "the user's own file keeps its mode (copied, not hard-linked)"
    again = await client.send_file(src, name="again.slp")
    assert again.cached and again.via == "cache"


async def test_not_used_when_file_outside_mapping(pair, share, tmp_path):
    paths = mapping(share)
    client, worker, _ = await pair(paths, paths)
    src = make_file(tmp_path / "elsewhere.slp", 100_000)
    sent = await client.send_file(src)
    assert sent.via == "datachannel" and sent.fallback == ""
    await worker.receive_file(timeout=10)


async def test_not_used_when_receiver_has_no_mapping(pair, share):
    client, worker, _ = await pair(mapping(share), FastPaths(direct=False))
    src = make_file(share[0] / "a.slp", 100_000)
    sent = await client.send_file(src)
    assert sent.via == "datachannel" and sent.bytes_sent == 100_000
    assert sha256_file((await worker.receive_file(timeout=10)).path) == sha256_file(src)


async def test_probe_mismatch_falls_back(pair, share, tmp_path):
    """The worker's prefix names a different folder with a same-named file: the probe catches it."""
    other = tmp_path / "other"
    other.mkdir()
    wrong = FastPaths(direct=False, shared_paths=((str(share[0]), str(other)),))
    client, worker, _ = await pair(wrong, wrong)
    src = make_file(share[0] / "a.slp", 100_000)
    (other / "a.slp").write_bytes(src.read_bytes())
    sent = await client.send_file(src)
    assert sent.via == "datachannel" and "probe" in sent.fallback
    assert sha256_file((await worker.receive_file(timeout=10)).path) == sha256_file(src)


async def test_changed_file_on_share_detected(pair, share, monkeypatch, caplog):
    """The file on the share differs from what the sender hashed: verification refuses it, bytes are sent."""
    paths = mapping(share)
    client, worker, _ = await pair(paths, paths)
    src = make_file(share[0] / "a.slp", 100_000)
    from sleap_rtc_plugin.peer import shared as shared_mod

    real_probe = shared_mod.write_probe

    def probe_then_tamper(root):
        result = real_probe(root)
        data = bytearray(src.read_bytes())
        data[10] ^= 1
        os.rename(src, src.with_suffix(".orig"))
        src.write_bytes(bytes(data))
        return result

    monkeypatch.setattr(shared_mod, "write_probe", probe_then_tamper)
    with caplog.at_level("WARNING"):
        with pytest.raises(TransferError) as err:
            # the sender then streams the (now changed) file: end-to-end sha256 refuses it too
            await client.send_file(src)
    assert err.value.code == "hash_mismatch"
    assert any("shared path refused" in r.getMessage() and "sha256 differs" in r.getMessage() for r in caplog.records)
    assert not (worker.transfers.receiver.dest_dir / "a.slp").exists()


async def test_receiver_refuses_paths_outside_its_roots(pair, share, tmp_path):
    paths = mapping(share)
    client, worker, _ = await pair(paths, paths)
    secret = tmp_path / "worker-secret.key"
    secret.write_bytes(b"k" * 100)
    from sleap_rtc_plugin.peer import shared as shared_mod

    with pytest.raises(shared_mod.SharedPathError):
        shared_mod.allowed(paths, "worker", str(secret))
    with pytest.raises(shared_mod.SharedPathError):
        shared_mod.allowed(paths, "worker", str(share[1] / ".." / "worker-secret.key"))


def test_mapping_and_feature_parsing():
    assert parse_mappings(["/mnt/a=/data/a"]) == (("/mnt/a", "/data/a"),)
    for bad in ["/mnt/a", "=/x", "a=b=c"]:
        with pytest.raises(ValueError):
            parse_mappings([bad])
    assert parse_features(software_string({"direct", "shared"})) == {"direct", "shared"}
    assert parse_features("") == set() and parse_features("other-tool +direct") == set()


async def test_shared_copy_progress_reaches_the_sender(pair, share, monkeypatch):
    """The receiver's copy is the transfer here: its progress comes back as file_ack and shows on the sender."""
    from sleap_rtc_plugin.peer import shared as shared_mod

    monkeypatch.setattr(shared_mod, "PROGRESS_EVERY", 1024 * 1024)
    paths = mapping(share)
    client, worker, rx = await pair(paths, paths)
    src = make_file(share[0] / "big.slp", 5 * 1024 * 1024 + 7)
    seen = []
    sent = await client.send_file(src, progress=lambda done, total: seen.append((done, total)))
    assert sent.via == "shared"
    assert [d for d, _ in seen if d < src.stat().st_size] and seen[-1] == (src.stat().st_size,) * 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
