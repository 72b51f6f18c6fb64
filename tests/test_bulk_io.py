"""The blocking fill -> write + hash pipeline behind the direct and shared-storage paths (real threads)."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import threading
import time

import pytest

from sleap_rtc_plugin.peer import bulk_io
from sleap_rtc_plugin.peer.direct import BLOCK
from sleap_rtc_plugin.peer.shared import SharedPathError, copy_verified


def source(data: bytes, fail_at: int | None = None):
    """A ``fill`` over ``data`` that jitters (so stages interleave) and can break at a byte offset."""
    pos = 0

    def fill(view: memoryview) -> None:
        nonlocal pos
        if fail_at is not None and pos + len(view) > fail_at:
            raise ConnectionError("stream broke")
        time.sleep(random.random() * 0.002)
        view[:] = data[pos : pos + len(view)]
        pos += len(view)

    return fill


def sink(fail_after_blocks: int | None = None):
    out, calls = bytearray(), []

    def write(view: memoryview) -> None:
        calls.append(len(view))
        if fail_after_blocks is not None and len(calls) > fail_after_blocks:
            raise bulk_io.SinkFailed(OSError(errno.ENOSPC, "No space left on device"))
        time.sleep(random.random() * 0.002)
        out.extend(view)

    return out, calls, write


def test_blocks_written_and_hashed_in_order_through_the_buffer_ring():
    data = os.urandom(bulk_io.BUFFERS * 3 * BLOCK + 12345)  # wraps the ring three times, short last block
    out, _, write = sink()
    h = hashlib.sha256()
    bulk_io.pipeline(source(data), len(data), write, h.update)
    assert bytes(out) == data and h.digest() == hashlib.sha256(data).digest()


def test_broken_fill_still_writes_and_hashes_every_whole_block():
    data = os.urandom(10 * BLOCK)
    out, _, write = sink()
    h = hashlib.sha256()
    with pytest.raises(ConnectionError):
        bulk_io.pipeline(source(data, fail_at=5 * BLOCK + 10), len(data), write, h.update)
    assert bytes(out) == data[: 5 * BLOCK]
    assert h.digest() == hashlib.sha256(data[: 5 * BLOCK]).digest()  # the resume prefix and its hash agree


def test_write_failure_stops_later_writes_and_wins_over_the_stream():
    data = os.urandom(12 * BLOCK)
    out, calls, write = sink(fail_after_blocks=3)
    with pytest.raises(bulk_io.SinkFailed) as err:
        bulk_io.pipeline(source(data), len(data), write, lambda v: None)
    assert err.value.error.errno == errno.ENOSPC
    assert bytes(out) == data[: 3 * BLOCK] and len(calls) == 4  # nothing after the failed block, so no hole


def test_no_threads_left_behind():
    before = threading.active_count()
    data = os.urandom(3 * BLOCK)
    for fail in (None, BLOCK + 1):
        try:
            bulk_io.pipeline(source(data, fail_at=fail), len(data), lambda v: None, lambda v: None)
        except ConnectionError:
            pass
    assert threading.active_count() == before


@pytest.mark.parametrize("change", ["shorter", "longer", "same size, other bytes"])
def test_shared_copy_refuses_a_file_that_is_not_the_offered_one(tmp_path, change):
    data = os.urandom(2 * BLOCK + 7)
    src = tmp_path / "src.bin"
    src.write_bytes({"shorter": data[:-1], "longer": data + b"x", "same size, other bytes": data[:-1] + b"\0"}[change])
    dest = tmp_path / "copy.bin"
    with pytest.raises(SharedPathError, match="not the offered file"):
        copy_verified(src, dest, hashlib.sha256(data).hexdigest(), len(data))
    assert not dest.exists()


def test_shared_copy_is_exact(tmp_path):
    data = os.urandom(5 * BLOCK + 3)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    copy_verified(src, tmp_path / "copy.bin", hashlib.sha256(data).hexdigest(), len(data))
    assert (tmp_path / "copy.bin").read_bytes() == data
