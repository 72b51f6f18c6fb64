"""Shared helpers for the peer-link tests: two real aiortc peers over loopback."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sleap_rtc_plugin.peer import PeerLink, accept, connect


async def open_pair(*, timeout: float = 30.0, client_paths=None, worker_paths=None, before_auth=None, secret: bytes | None = None,
                    **link_kwargs) -> tuple[PeerLink, PeerLink]:
    """A connected (client, worker) pair; signaling is a direct function call.

    ``client_paths``/``worker_paths``: each side's :class:`FastPaths`. With ``secret`` both
    sides authenticate with it (``before_auth(client, worker)`` runs first) and must agree on PSK.
    """
    worker_task: asyncio.Future | None = None

    async def send_offer(offer: dict) -> dict:
        nonlocal worker_task
        answer, worker_task = await accept(offer, timeout=timeout, role="worker", peer_id="w1", allow_loopback=True, fastpaths=worker_paths)
        return answer

    client = await connect(send_offer, timeout=timeout, role="client", peer_id="c1", allow_loopback=True, fastpaths=client_paths)
    worker = await worker_task
    if before_auth is not None:
        before_auth(client, worker)
    if secret is not None:
        assert await auth_pair(client, worker, secret, secret) == ["psk", "psk"]
    for link in (client, worker):
        for k, v in link_kwargs.items():
            setattr(link, k, v)
    return client, worker


async def auth_pair(client: PeerLink, worker: PeerLink, client_secret, worker_secret, **kw):
    """Run both sides of the handshake; returns (client_result, worker_result), each a mode or an exception."""
    return await asyncio.gather(
        client.authenticate(client_secret, **kw), worker.authenticate(worker_secret), return_exceptions=True
    )


def make_file(path: Path, size: int) -> Path:
    """A file of ``size`` pseudo-random bytes, written in blocks (never all in memory)."""
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as fh:
        left = size
        i = 0
        while left > 0:
            piece = block[: min(left, len(block))]
            fh.write(i.to_bytes(8, "big") + piece[8:] if len(piece) > 8 else piece)
            left -= len(piece)
            i += 1
    return path


def flip_byte_in_frame(n: int):
    """An outgoing-frame filter that flips the last byte of the ``n``-th frame: a tampered chunk."""
    count = 0

    def flip(frame: bytes) -> bytes:
        nonlocal count
        count += 1
        if count == n:
            frame = bytearray(frame)
            frame[-1] ^= 0xFF
            return bytes(frame)
        return frame

    return flip


def fill_disk_after(monkeypatch, limit: int):
    """Make the receiver's one file-write function raise ENOSPC once ``limit`` bytes are on
    disk; returns a function that frees the disk again."""
    import errno

    from sleap_rtc_plugin.peer.staging import DISK

    real_write = DISK.write
    written = 0

    def write_until_full(fh, data):
        nonlocal written
        if written >= limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        written += len(data)
        real_write(fh, data)

    monkeypatch.setattr(DISK, "write", write_until_full)
    return lambda: monkeypatch.setattr(DISK, "write", real_write)
