"""The receiver's content-addressed cache: size cap, LRU eviction, and repeat submissions that move nothing."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from fixtures_peer import auth_pair, make_file, open_pair
from sleap_rtc_plugin.peer import FastPaths
from sleap_rtc_plugin.peer.cache import ContentCache
from sleap_rtc_plugin.util.hashing import sha256_file

pytestmark = pytest.mark.timeout(300)


def _entry(root, tmp, name: str, size: int, sha: str, age: float):
    src = tmp / name
    src.write_bytes(os.urandom(size))
    cache = ContentCache(root, None)
    path = cache.put(src, sha)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_lru_eviction_keeps_recently_used_and_new(tmp_path):
    root = tmp_path / "cache"
    a, b, c = ("a" * 64, "b" * 64, "c" * 64)
    _entry(root, tmp_path, "a", 400, a, age=300)
    _entry(root, tmp_path, "b", 400, b, age=200)
    cache = ContentCache(root, max_bytes=1000)
    assert cache.get(a) is not None  # a is now the most recently used
    new = tmp_path / "c"
    new.write_bytes(os.urandom(400))
    cache.put(new, c)
    assert cache.path_of(b) is None, "least recently used entry must go"
    assert cache.path_of(a) is not None and cache.path_of(c) is not None
    assert cache.total_bytes() == 800


def test_new_entry_larger_than_cap_is_kept_until_next_put(tmp_path):
    cache = ContentCache(tmp_path / "cache", max_bytes=100)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 500)
    cache.put(big, "d" * 64)
    assert cache.path_of("d" * 64) is not None
    small = tmp_path / "small"
    small.write_bytes(b"y" * 50)
    cache.put(small, "e" * 64)
    assert cache.path_of("d" * 64) is None and cache.path_of("e" * 64) is not None


def test_no_cap_never_evicts(tmp_path):
    cache = ContentCache(tmp_path / "cache", max_bytes=None)
    for i in range(3):
        f = tmp_path / f"f{i}"
        f.write_bytes(b"z" * 1000)
        cache.put(f, f"{i}" * 64)
    assert len(cache.entries()) == 3


@pytest.mark.parametrize("paths", [FastPaths(direct=False), FastPaths(direct=True)], ids=["datachannel", "direct"])
async def test_capped_cache_over_real_link(tmp_path, paths):
    client, worker = await open_pair(client_paths=paths, worker_paths=paths)
    try:
        assert await auth_pair(client, worker, b"k", b"k") == ["psk", "psk"]
        rx = await worker.accept_files(tmp_path / "rx", cache_max_bytes=250_000)
        files = [make_file(tmp_path / f"v{i}.mp4", 100_000 + i) for i in range(3)]
        for f in files:
            sent = await client.send_file(f)
            assert not sent.cached
            await worker.receive_file(timeout=10)
            await asyncio.sleep(0.01)
        assert rx.cached_path(sha256_file(files[0])) is None, "oldest entry evicted under the 250 kB cap"
        assert rx.cache.total_bytes() <= 250_000
        again = await client.send_file(files[2], name="again.mp4")
        got = await worker.receive_file(timeout=10)
        assert again.cached and again.bytes_sent == 0 and again.via == "cache" and got.via == "cache"
        assert sha256_file(got.path) == sha256_file(files[2])
        evicted = await client.send_file(files[0], name="back.mp4")
        assert not evicted.cached and evicted.bytes_sent == files[0].stat().st_size
        assert (tmp_path / "rx" / "v0.mp4").exists(), "eviction never removes a placed file"
    finally:
        await client.close()
        await worker.close()
