"""SHA-256 of files on disk, shared by the peer link, the worker's outbox and the client.

Blocking: call these from a thread (``asyncio.to_thread``) on the network side.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

HASH_BLOCK = 1024 * 1024


def sha256_prefix(path: Path, limit: int | None = None) -> "hashlib._Hash":
    """The running SHA-256 of ``path``'s first ``limit`` bytes (the whole file by default), to go on updating."""
    h = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as fh:
        while remaining is None or remaining > 0:
            block = fh.read(HASH_BLOCK if remaining is None else min(HASH_BLOCK, remaining))
            if not block:
                break
            h.update(block)
            if remaining is not None:
                remaining -= len(block)
    return h


def sha256_file(path: Path, limit: int | None = None) -> str:
    return sha256_prefix(path, limit).hexdigest()


def version_id(key: tuple) -> str:
    """32 hex characters naming one version of a file (a :meth:`HashMemo.lookup` key) without its content.

    Stable across processes (path, device, inode, size, mtime), so a transfer of a file
    not yet hashed can be resumed under this name by a later link."""
    return hashlib.sha256(repr(key).encode()).hexdigest()[:32]


class HashMemo:
    """Digests keyed by (real path, device, inode, size, mtime): a resubmitted package hashes nothing.

    Bounded (cleared past ``max_entries``) and thread-safe, since senders hash in worker threads.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._digests: dict[tuple, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key_of(path: Path) -> tuple:
        """What identifies one version of a file for the memo (``os.stat`` fields; blocking)."""
        st = os.stat(path)
        return (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def lookup(self, path: Path) -> tuple[int, str | None, tuple]:
        """Size, memoised sha256 (None when this version was never hashed) and memo key of ``path``."""
        key = self.key_of(path)
        with self._lock:
            return key[3], self._digests.get(key), key

    def remember(self, key: tuple, digest: str) -> None:
        """Record ``digest`` for the file version ``key`` (from :meth:`lookup`)."""
        with self._lock:
            if len(self._digests) >= self.max_entries:
                self._digests.clear()
            self._digests[key] = digest

    def stat_and_hash(self, path: Path) -> tuple[int, str]:
        """Size and sha256 of ``path``, from the memo when the file has not changed."""
        size, digest, key = self.lookup(path)
        if digest is None:
            digest = sha256_file(path)
            self.remember(key, digest)
        return size, digest

    def clear(self) -> None:
        with self._lock:
            self._digests.clear()


#: The process's memo. One per process on purpose: the GUI resubmits a package over a new link
#: each time, and only a memo that outlives the link saves hashing a multi-GB file again.
MEMO = HashMemo()


def stat_and_hash(path: Path) -> tuple[int, str]:
    """Size and sha256 of ``path`` through the process memo (:data:`MEMO`)."""
    return MEMO.stat_and_hash(path)
