"""The sans-I/O transfer core (and the receiver's disk staging) with plain bytes: no aiortc, no event loop."""

from __future__ import annotations

import ast
import errno
import hashlib
import json
from pathlib import Path

import pytest

from sleap_rtc_plugin.peer.errors import TransferError
from sleap_rtc_plugin.peer.staging import FileReceiver, PartClaims
from sleap_rtc_plugin.peer.transfer_core import (
    ACK_EVERY,
    HEADER,
    SEND_WINDOW,
    Abort,
    ReceiverCore,
    ReplyError,
    SenderCore,
    Sidecar,
    WriteChunk,
    frame_chunk,
    io_failure,
    resume_point,
)
from sleap_rtc_plugin.protocol.transfer import DirectOffer, FileAccept, FileAck, FileDone, FileEnd, FileOffer, FileReject
from sleap_rtc_plugin.util.hashing import HashMemo, sha256_file

TID = "ab" * 16
DATA = bytes(range(256)) * 40  # 10,240 bytes
SHA = hashlib.sha256(DATA).hexdigest()


def offer(name: str = "pkg.slp", size: int = len(DATA), sha: str = SHA, tid: str = TID) -> FileOffer:
    return FileOffer(transfer_id=tid, name=name, size=size, sha256=sha)


def chunk(offset: int, data: bytes, tid: str = TID) -> bytes:
    return frame_chunk(bytes.fromhex(tid), offset, data)


def receive_all(core: ReceiverCore, frames: list[bytes]) -> list:
    """Feed frames; apply each WriteChunk as the driver would (the bytes go nowhere)."""
    steps = []
    for frame in frames:
        step = core.chunk(frame)
        steps.append(step)
        if isinstance(step, WriteChunk):
            core.written(step.inc, len(step.data))
    return steps


def test_core_module_does_no_io():
    """The core imports no event loop, network, thread or OS module: frames in, decisions out."""
    import sleap_rtc_plugin.peer.transfer_core as core

    tree = ast.parse(Path(core.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
    assert not imported & {"asyncio", "aiortc", "socket", "ssl", "threading", "os", "shutil", "concurrent"}
    assert relative <= {"errors", "fastpath", "file_names"}


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "C:\\x", "C:x", "a\\b", "a\x00b", "", "a//b", ".sleap-rtc-partial/x"])
def test_offer_with_a_traversing_name_is_refused(name):
    core = ReceiverCore()
    with pytest.raises(TransferError) as err:
        core.check_offer(offer(name), accepting=True, max_size=10**9)
    assert err.value.code == "bad_name"


def test_offer_checks_accepting_size_and_busy():
    core = ReceiverCore()
    with pytest.raises(TransferError) as err:
        core.check_offer(offer(), accepting=False, max_size=10**9)
    assert err.value.code == "not_accepting"
    with pytest.raises(TransferError) as err:
        core.check_offer(offer(size=1001), accepting=True, max_size=1000)
    assert err.value.code == "too_large" and "at most 1000" in str(err.value)
    core.check_offer(offer(size=1000), accepting=True, max_size=1000)
    core.start(offer(), 0)
    with pytest.raises(TransferError) as err:
        core.check_offer(offer(tid="cd" * 16), accepting=True, max_size=10**9)
    assert err.value.code == "busy"


def test_chunks_in_order_then_end_and_verdict():
    core = ReceiverCore()
    inc = core.start(offer(), 0)
    steps = receive_all(core, [chunk(0, DATA[:4000]), chunk(4000, DATA[4000:])])
    assert all(isinstance(s, WriteChunk) for s in steps)
    assert bytes(steps[0].data) + bytes(steps[1].data) == DATA and inc.offset == len(DATA)
    done = core.end(FileEnd(transfer_id=TID, size=len(DATA)))
    assert done is inc and TID not in core.incoming
    assert core.verdict(inc, SHA) == FileDone(transfer_id=TID, sha256=SHA)


def test_hash_mismatch_is_rejected():
    core = ReceiverCore()
    inc = core.start(offer(), 0)
    receive_all(core, [chunk(0, DATA)])
    assert core.end(FileEnd(transfer_id=TID, size=len(DATA))) is inc
    verdict = core.verdict(inc, hashlib.sha256(b"other").hexdigest())
    assert isinstance(verdict, FileReject) and verdict.code == "hash_mismatch"


@pytest.mark.parametrize(
    "frames",
    [
        [chunk(0, DATA[:100]), chunk(200, DATA[200:300])],  # a gap
        [chunk(0, DATA[:100]), chunk(0, DATA[:100])],  # a duplicate
        [chunk(100, DATA[100:200])],  # out of order from the start
        [chunk(0, DATA + b"x")],  # beyond the announced size
    ],
    ids=["gap", "duplicate", "out-of-order", "oversized"],
)
def test_chunk_that_does_not_follow_aborts_the_transfer(frames):
    core = ReceiverCore()
    core.start(offer(), 0)
    steps = receive_all(core, frames)
    assert isinstance(steps[-1], Abort) and steps[-1].code == "bad_frame" and steps[-1].transfer_id == TID
    assert all(isinstance(s, WriteChunk) for s in steps[:-1])


def test_garbage_frames_are_a_link_error_and_unknown_transfers_are_dropped():
    core = ReceiverCore()
    core.start(offer(), 0)
    assert core.chunk(b"short") == ReplyError("bad_frame", "binary frame shorter than its header")
    assert isinstance(core.chunk(b"XXXX" + chunk(0, b"abc")[4:]), ReplyError)
    assert core.chunk(chunk(0, b"abc", tid="cd" * 16)) is None


def test_file_end_before_all_bytes_aborts():
    core = ReceiverCore()
    core.start(offer(), 0)
    receive_all(core, [chunk(0, DATA[:10])])
    step = core.end(FileEnd(transfer_id=TID, size=len(DATA)))
    assert isinstance(step, Abort) and step.code == "bad_frame" and TID in core.incoming
    assert core.end(FileEnd(transfer_id="cd" * 16, size=1)) is None


def test_resume_point_due_every_ack_every_bytes():
    size = ACK_EVERY * 2 + 10
    core = ReceiverCore()
    inc = core.start(offer(size=size, sha="0" * 64), 0)
    piece = b"\0" * (ACK_EVERY // 4)
    due = []
    for i in range(8):
        step = core.chunk(chunk(i * len(piece), piece))
        assert isinstance(step, WriteChunk)
        if core.written(inc, len(piece)):
            due.append(inc.offset)
            assert core.recorded(inc, inc.offset) == FileAck(transfer_id=TID, offset=inc.offset)
    assert due == [ACK_EVERY, 2 * ACK_EVERY] and inc.durable == 2 * ACK_EVERY


def test_resume_point_from_sidecar():
    o = offer()
    text = Sidecar.of(o, 4096).encode()
    assert resume_point(text, o, part_size=5000) == 4096
    assert resume_point(text, o, part_size=4000) == 0, "the .part holds less than the sidecar says"
    assert resume_point(text, o, part_size=None) == 0
    assert resume_point(text, offer(sha="1" * 64), part_size=5000) == 0, "another content's sidecar"
    assert resume_point(text, offer(size=len(DATA) + 1), part_size=5000) == 0
    assert resume_point(Sidecar.of(o, len(DATA) + 1).encode(), o, part_size=10**6) == 0
    for junk in ("", "{", "[]", json.dumps({"offset": "x", "sha256": SHA, "size": len(DATA)}), None):
        assert resume_point(junk, o, part_size=5000) == 0


def test_a_resumed_transfer_continues_at_its_offset():
    core = ReceiverCore()
    inc = core.start(offer(), 4096)
    assert inc.resumed_from == 4096
    assert isinstance(core.chunk(chunk(0, DATA[:10])), Abort)
    core = ReceiverCore()
    inc = core.start(offer(), 4096)
    receive_all(core, [chunk(4096, DATA[4096:])])
    assert core.end(FileEnd(transfer_id=TID, size=len(DATA))) is inc


def test_direct_stream_must_carry_exactly_the_rest():
    core = ReceiverCore()
    inc = core.start(offer(), 100)
    assert core.stream_fits(inc, 100, len(DATA) - 100)
    assert not core.stream_fits(inc, 0, len(DATA))
    assert not core.stream_fits(inc, 100, 10)
    inc.direct_active = True
    assert not core.stream_fits(inc, 100, len(DATA) - 100)
    assert isinstance(core.chunk(chunk(100, DATA[100:200])), Abort), "no data-channel chunks while a stream writes"


def test_enospc_maps_to_disk_full_in_one_place():
    full = OSError(errno.ENOSPC, "No space left on device")
    err = io_failure(full, "receiver write failed", name="a.slp", durable=4096)
    assert err.code == "disk_full" and "after 4096 bytes" in str(err) and "kept for resume" in str(err)
    assert io_failure(full, "cannot stage 'a.slp'", name="a.slp").code == "disk_full"
    other = io_failure(OSError(errno.EIO, "I/O error"), "receiver write failed", name="a.slp", durable=0)
    assert other.code == "io_error" and str(other) == "receiver write failed: I/O error"


def test_sender_core_window_acks_and_replies():
    core = SenderCore(TID, "pkg.slp", 10 * SEND_WINDOW, SHA)
    assert core.offer() == FileOffer(transfer_id=TID, name="pkg.slp", size=10 * SEND_WINDOW, sha256=SHA)
    assert core.window_open(SEND_WINDOW) and not core.window_open(SEND_WINDOW + 1)
    assert core.receive(FileAck(transfer_id=TID, offset=SEND_WINDOW)) is None
    assert core.window_open(2 * SEND_WINDOW) and core.acked == SEND_WINDOW
    assert core.receive(FileAck(transfer_id=TID, offset=10)) is None and core.acked == SEND_WINDOW, "acks never go back"
    direct = DirectOffer(transfer_id=TID, host="127.0.0.1", port=1, token="0" * 64, cert_sha256="0" * 64)
    assert core.receive(direct) is direct and core.direct is direct
    accept = FileAccept(transfer_id=TID, offset=5)
    assert core.receive(accept) is accept and core.resume_offset(accept) == 5
    with pytest.raises(TransferError) as err:
        core.resume_offset(FileAccept(transfer_id=TID, offset=10 * SEND_WINDOW + 1))
    assert err.value.code == "bad_frame"
    refusal = core.receive(FileReject(transfer_id=TID, code="disk_full", message="full"))
    assert isinstance(refusal, TransferError) and refusal.code == "disk_full" and core.error is refusal
    assert core.window_open(100 * SEND_WINDOW), "a failed transfer never waits for the window"
    frame = core.chunk(7, b"abc")
    assert frame[HEADER.size :] == b"abc" and HEADER.unpack_from(frame)[1:] == (bytes.fromhex(TID), 7)


# -- the receiver's disk (blocking, still no network) -----------------------------------


def stage_part(rx: FileReceiver, data: bytes, o: FileOffer):
    staged, offset = rx.open(o, rx.dest_dir / o.name)
    return staged, offset


def test_staging_records_the_resume_point_and_a_new_receiver_resumes(tmp_path):
    claims = PartClaims()
    rx = FileReceiver(tmp_path / "rx", partial_dir=tmp_path / "partial", claims=claims)
    o = offer()
    staged, offset = stage_part(rx, DATA, o)
    assert offset == 0
    staged.write(DATA[:6000])
    staged.close(record_at=6000)
    assert json.loads(staged.state.read_text()) == {"sha256": SHA, "size": len(DATA), "name": "pkg.slp", "offset": 6000}

    rx2 = FileReceiver(tmp_path / "rx2", partial_dir=tmp_path / "partial", claims=claims)
    staged, offset = stage_part(rx2, DATA, o)
    assert offset == 6000
    staged.write(DATA[6000:])
    assert rx2.finish(staged) == SHA
    assert (rx2.dest_dir / "pkg.slp").read_bytes() == DATA and not staged.part.exists() and not staged.state.exists()
    assert rx2.place_cached(SHA, len(DATA), rx2.dest_dir / "again.slp") and (rx2.dest_dir / "again.slp").read_bytes() == DATA


def test_staging_discards_a_corrupted_file(tmp_path):
    rx = FileReceiver(tmp_path / "rx", claims=PartClaims())
    staged, _ = stage_part(rx, DATA, offer())
    staged.write(DATA[:-1] + b"\0")
    assert rx.finish(staged) != SHA
    assert not staged.part.exists() and not (rx.dest_dir / "pkg.slp").exists() and rx.cached_path(SHA) is None


def test_claims_are_injectable(tmp_path):
    """Receivers with their own claims registry do not see each other's .part (the default is per process)."""
    partial = tmp_path / "partial"
    a = FileReceiver(tmp_path / "a", partial_dir=partial, claims=PartClaims())
    b = FileReceiver(tmp_path / "b", partial_dir=partial, claims=PartClaims())
    shared_claims = PartClaims()
    c = FileReceiver(tmp_path / "c", partial_dir=partial, claims=shared_claims)
    d = FileReceiver(tmp_path / "d", partial_dir=partial, claims=shared_claims)
    staged, _ = stage_part(a, DATA, offer())
    stage_part(b, DATA, offer())[0].close()
    staged.close()
    staged, _ = stage_part(c, DATA, offer())
    with pytest.raises(TransferError) as err:
        stage_part(d, DATA, offer())
    assert err.value.code == "busy"
    staged.close()


def test_hash_memo_skips_an_unchanged_file_and_notices_a_change(tmp_path, monkeypatch):
    import sleap_rtc_plugin.util.hashing as hashing

    path = tmp_path / "f"
    path.write_bytes(DATA)
    memo = HashMemo(max_entries=2)
    calls = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p, limit=None: calls.append(p) or real(p, limit))
    assert memo.stat_and_hash(path) == (len(DATA), SHA)
    assert memo.stat_and_hash(path) == (len(DATA), SHA) and len(calls) == 1
    path.write_bytes(DATA + b"x")
    assert memo.stat_and_hash(path) == (len(DATA) + 1, sha256_file(path)) and len(calls) == 2


def test_hash_memo_store_outlives_the_process_and_merges_what_other_processes_wrote(tmp_path, monkeypatch):
    """A new ``sleap-rtc`` run names a file's digest up front from the store; a worker beside it loses none of its entries."""
    from sleap_rtc_plugin.util import hashing

    store = tmp_path / "cache" / "file-hashes.json"
    video, labels = tmp_path / "robot.mp4", tmp_path / "labels.slp"
    video.write_bytes(DATA)
    labels.write_bytes(DATA[::-1])
    client, worker = HashMemo(store=store), HashMemo(store=store)
    assert worker.lookup(labels)[1] is None  # the worker has read the (empty) store before the client writes
    client.stat_and_hash(video)
    worker.stat_and_hash(labels)
    assert store.stat().st_mode & 0o777 == 0o600
    calls = []
    monkeypatch.setattr(hashing, "sha256_file", lambda p, limit=None: calls.append(p))
    later = HashMemo(store=store)  # the next CLI process
    assert later.lookup(video)[1] == SHA and later.stat_and_hash(labels)[1] == hashlib.sha256(DATA[::-1]).hexdigest()
    assert calls == []
    video.write_bytes(DATA + b"x")
    assert HashMemo(store=store).lookup(video)[1] is None  # a changed file is a new version
    store.write_text("{not json")
    assert HashMemo(store=store).lookup(labels)[1] is None  # a damaged store costs a re-hash, nothing else
    later.clear()
    assert HashMemo(store=store).lookup(labels)[1] is None
