"""SHA-256 of files on disk, shared by the peer link, the worker's outbox and the client.

Blocking: call these from a thread (``asyncio.to_thread``) on the network side.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import platformdirs

from .private_files import write_private_json

log = logging.getLogger(__name__)

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

    Bounded and thread-safe, since senders hash in worker threads. With a ``store`` file the
    digests outlive the process, the way git's index does: the direct path sends a file it
    has not hashed yet with the digest at the end (no pass before the bytes move), so only
    a digest remembered from an earlier ``sleap-rtc`` run lets the next run's offer name it
    up front and hit the worker's content cache instead of sending the video again.
    """

    def __init__(self, max_entries: int = 4096, store: Path | None = None) -> None:
        self.max_entries = max_entries
        self.store = store
        self._digests: dict[tuple, str] = {}
        self._stored: dict[str, str] | None = None
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
            digest = self._digests.get(key)
            if digest is None and self.store is not None:
                digest = self._load().get(version_id(key))
            return key[3], digest, key

    def remember(self, key: tuple, digest: str) -> None:
        """Record ``digest`` for the file version ``key`` (from :meth:`lookup`)."""
        with self._lock:
            if len(self._digests) >= self.max_entries:
                self._digests.clear()
            self._digests[key] = digest
            if self.store is not None:
                stored = self._load(fresh=True)  # another process (a worker beside the client) may have written since
                stored[version_id(key)] = digest
                while len(stored) > self.max_entries:
                    del stored[next(iter(stored))]
                self._save(stored)

    def stat_and_hash(self, path: Path) -> tuple[int, str]:
        """Size and sha256 of ``path``, from the memo when the file has not changed."""
        size, digest, key = self.lookup(path)
        if digest is None:
            digest = sha256_file(path)
            self.remember(key, digest)
        return size, digest

    def clear(self) -> None:
        """Forget every digest, in memory and in the store."""
        with self._lock:
            self._digests.clear()
            if self.store is not None:
                self._stored = {}
                self._save(self._stored)

    def _load(self, *, fresh: bool = False) -> dict[str, str]:
        if self._stored is None or fresh:
            self._stored = {}
            try:
                data = json.loads(self.store.read_text(encoding="utf-8")) if self.store is not None and self.store.is_file() else {}
            except (OSError, ValueError) as exc:
                log.warning("ignoring the file-hash memo %s (%s); files are hashed again", self.store, exc)
                data = {}
            if isinstance(data, dict):
                self._stored = {k: v for k, v in data.items() if _is_hex(k, 32) and _is_hex(v, 64)}
        return self._stored

    def _save(self, stored: dict[str, str]) -> None:
        assert self.store is not None
        try:
            self.store.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private_json(self.store, stored)
        except OSError as exc:  # a read-only home costs only the speed-up
            log.debug("could not keep the file-hash memo in %s: %s", self.store, exc)


def _is_hex(value: object, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and all(c in "0123456789abcdef" for c in value)


def default_store() -> Path:
    """Where the memo outlives the process: the user's cache dir (platformdirs)."""
    return Path(platformdirs.user_cache_dir("sleap-rtc", appauthor=False)) / "file-hashes.json"


#: The process's memo. One per process on purpose: the GUI resubmits a package over a new link
#: each time, and only a memo that outlives the link saves hashing a multi-GB file again.
MEMO = HashMemo(store=default_store())


def stat_and_hash(path: Path) -> tuple[int, str]:
    """Size and sha256 of ``path`` through the process memo (:data:`MEMO`)."""
    return MEMO.stat_and_hash(path)
