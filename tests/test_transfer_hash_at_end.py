"""Offers that name their digest in ``file_end`` (``+hashend``): the SHA-256 pass runs beside the direct stream.

Core and staging with plain bytes, then real aiortc peers on loopback (a host-to-host pair,
so the direct stream is what carries the bytes).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import pytest

from fixtures_peer import make_file, open_pair
from sleap_rtc_plugin.peer import FastPaths, TransferError
from sleap_rtc_plugin.peer.staging import DISK, FileReceiver, PartClaims
from sleap_rtc_plugin.peer.transfer_core import Abort, ReceiverCore, SenderCore, WriteChunk, frame_chunk
from sleap_rtc_plugin.protocol import PEER, ProtocolError
from sleap_rtc_plugin.protocol.transfer import FileDone, FileEnd, FileOffer, FileReject
from sleap_rtc_plugin.util.hashing import MEMO, sha256_file, version_id

pytestmark = pytest.mark.timeout(300)

ON = FastPaths(direct=True)
TID = "ab" * 16
KEY = "cd" * 16
DATA = os.urandom(10_000)
SHA = hashlib.sha256(DATA).hexdigest()


def streamed_offer(tid: str = TID, key: str = KEY) -> FileOffer:
    return FileOffer(transfer_id=tid, name="pkg.slp", size=len(DATA), sha256="", resume_key=key)


# -- protocol, core, staging -----------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, fragment",
    [({"sha256": "", "resume_key": ""}, "needs a sha256 or a resume_key"), ({"sha256": "", "resume_key": "xyz"}, "resume_key must be")],
    ids=["neither", "bad-key"],
)
def test_offer_without_digest_needs_a_valid_resume_key(fields, fragment):
    frame = json.dumps({"type": "file_offer", "v": 1, "transfer_id": TID, "name": "a", "size": 1, **fields})
    with pytest.raises(ProtocolError) as err:
        PEER.decode(frame)
    assert err.value.code == "bad_value" and fragment in str(err.value)


def test_file_end_digest_is_validated():
    with pytest.raises(ProtocolError):
        PEER.decode(json.dumps({"type": "file_end", "v": 1, "transfer_id": TID, "size": 1, "sha256": "NOT-HEX"}))
    assert PEER.decode(FileEnd(transfer_id=TID, size=1, sha256=SHA).encode()) == FileEnd(transfer_id=TID, size=1, sha256=SHA)


def test_sender_core_names_the_digest_only_where_the_offer_did_not():
    streamed = SenderCore(TID, "pkg.slp", len(DATA), "", KEY)
    assert streamed.offer() == streamed_offer() and streamed.end(SHA).sha256 == SHA
    named = SenderCore(TID, "pkg.slp", len(DATA), SHA, KEY)
    assert named.offer().sha256 == SHA and named.end(SHA).sha256 == ""


def _receive_whole(core: ReceiverCore, offer: FileOffer):
    inc = core.start(offer, 0)
    step = core.chunk(frame_chunk(bytes.fromhex(offer.transfer_id), 0, DATA))
    assert isinstance(step, WriteChunk)
    core.written(inc, len(DATA))
    return inc


def test_receiver_core_verifies_against_the_digest_file_end_names():
    core = ReceiverCore()
    inc = _receive_whole(core, streamed_offer())
    assert core.end(FileEnd(transfer_id=TID, size=len(DATA), sha256=SHA)) is inc
    assert core.verdict(inc, SHA) == FileDone(transfer_id=TID, sha256=SHA)
    wrong = core.verdict(inc, hashlib.sha256(b"other").hexdigest())
    assert isinstance(wrong, FileReject) and wrong.code == "hash_mismatch"


def test_file_end_without_any_digest_is_refused():
    """Neither the offer nor file_end named a digest: nothing to verify against, so nothing is accepted."""
    core = ReceiverCore()
    _receive_whole(core, streamed_offer())
    step = core.end(FileEnd(transfer_id=TID, size=len(DATA)))
    assert isinstance(step, Abort) and step.code == "bad_frame" and "names no sha256" in step.message


def test_staging_keys_a_streamed_offer_by_resume_key_and_resumes_once_the_digest_is_known(tmp_path):
    """First offer: no digest, partial named by the resume key. The next link's offer names the digest
    (the sender's pass finished meanwhile) and the same key: it resumes the same partial copy."""
    claims = PartClaims()
    rx = FileReceiver(tmp_path / "rx", partial_dir=tmp_path / "partial", claims=claims)
    staged, offset = rx.open(streamed_offer(), rx.dest_dir / "pkg.slp")
    assert offset == 0 and staged.part.name == f"rk-{KEY}.part"
    staged.write(DATA[:6000])
    staged.close(record_at=6000)
    assert staged.part.exists() and json.loads(staged.state.read_text())["resume_key"] == KEY

    named = FileOffer(transfer_id="ef" * 16, name="pkg.slp", size=len(DATA), sha256=SHA, resume_key=KEY)
    staged, offset = rx.open(named, rx.dest_dir / "pkg.slp")
    assert offset == 6000
    staged.write(DATA[6000:])
    assert rx.finish(staged) == SHA and (rx.dest_dir / "pkg.slp").read_bytes() == DATA and rx.cached_path(SHA) is not None

    other_key = FileOffer(transfer_id="ef" * 16, name="pkg.slp", size=len(DATA), sha256="", resume_key="12" * 16)
    staged, offset = rx.open(other_key, rx.dest_dir / "x.slp")
    assert offset == 0
    staged.close()


def test_staging_finish_checks_the_digest_it_is_given(tmp_path):
    rx = FileReceiver(tmp_path / "rx", claims=PartClaims())
    staged, _ = rx.open(streamed_offer(), rx.dest_dir / "pkg.slp")
    staged.write(DATA)
    assert rx.finish(staged, hashlib.sha256(b"other").hexdigest()) == SHA
    assert not staged.part.exists() and not (rx.dest_dir / "pkg.slp").exists() and rx.cached_path(SHA) is None


# -- real peers ---------------------------------------------------------------------------------


@pytest.fixture
async def pair(tmp_path):
    links = []

    async def make():
        client, worker = await open_pair(client_paths=ON, worker_paths=ON, secret=b"k")
        links.extend([client, worker])
        seen: list = []
        real = worker.transfers.on_control

        async def record(msg):
            seen.append(msg)
            await real(msg)

        worker.transfers.on_control = record
        return client, worker, await worker.accept_files(tmp_path / "rx"), seen

    yield make
    for link in links:
        await link.close()


async def test_first_send_names_the_digest_at_the_end_and_the_next_hits_the_cache(pair, tmp_path):
    client, worker, rx, seen = await pair()
    src = make_file(tmp_path / "pkg.slp", 3 * 1024 * 1024 + 7)
    MEMO.clear()
    sent = await client.send_file(src)
    got = await worker.receive_file(timeout=10)
    offer = next(m for m in seen if isinstance(m, FileOffer))
    end = next(m for m in seen if isinstance(m, FileEnd))
    truth = sha256_file(src)
    assert offer.sha256 == "" and offer.resume_key == version_id(MEMO.key_of(src))
    assert end.sha256 == truth == sent.sha256 == got.sha256 and sent.via == got.via == "direct"
    assert sha256_file(got.path) == truth and rx.cached_path(truth) is not None and not list(rx.partial_dir.iterdir())

    seen.clear()
    again = await client.send_file(src, name="again.slp")
    assert again.via == "cache" and next(m for m in seen if isinstance(m, FileOffer)).sha256 == truth


async def test_digest_up_front_when_the_peer_does_not_announce_hashend(pair, tmp_path, monkeypatch):
    """An older peer (no ``+hashend``) gets the digest in the offer, as before."""
    client, worker, rx, seen = await pair()
    monkeypatch.setattr(client, "remote_features", client.remote_features - {"hashend"})
    src = make_file(tmp_path / "pkg.slp", 1024 * 1024)
    MEMO.clear()
    sent = await client.send_file(src)
    offer = next(m for m in seen if isinstance(m, FileOffer))
    assert offer.sha256 == sha256_file(src) and offer.resume_key == "" and sent.via == "direct"


async def test_a_bad_read_on_the_sending_side_is_still_caught(pair, tmp_path, monkeypatch):
    """The digest comes from a pass of its own reads, not from the blocks sent: a read corrupted on the
    way to the stream is a mismatch, refused, and nothing is placed."""
    client, worker, rx, _ = await pair()
    src = make_file(tmp_path / "pkg.slp", 2 * 1024 * 1024)
    real_read = DISK.read

    def corrupt(fh, size):
        data = bytearray(real_read(fh, size))
        if data:
            data[-1] ^= 0x01
        return bytes(data)

    MEMO.clear()
    monkeypatch.setattr(DISK, "read", corrupt)
    with pytest.raises(TransferError) as err:
        await client.send_file(src)
    assert err.value.code == "hash_mismatch"
    assert not (rx.dest_dir / "pkg.slp").exists() and not list(rx.partial_dir.iterdir())


async def test_a_file_rewritten_while_it_is_sent_is_refused(pair, tmp_path, monkeypatch):
    client, worker, rx, _ = await pair()
    src = make_file(tmp_path / "pkg.slp", 2 * 1024 * 1024)
    real_read = DISK.read
    touched = []

    def touch_once(fh, size):
        if not touched:
            touched.append(True)
            st = os.stat(src)
            os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return real_read(fh, size)

    MEMO.clear()
    monkeypatch.setattr(DISK, "read", touch_once)
    with pytest.raises(TransferError) as err:
        await client.send_file(src)
    assert err.value.code == "io_error" and "changed while it was being sent" in str(err.value)
    assert not (rx.dest_dir / "pkg.slp").exists()


async def test_the_direct_identity_is_made_when_files_are_accepted_not_at_the_first_offer(pair):
    """The TLS key and certificate (~10 ms) are made once files are accepted, so no offer waits for them."""
    client, worker, rx, _ = await pair()
    direct_rx = worker.transfers.incoming.direct
    for _ in range(200):
        if direct_rx._identity is not None:
            break
        await asyncio.sleep(0.01)
    assert direct_rx._identity is not None
