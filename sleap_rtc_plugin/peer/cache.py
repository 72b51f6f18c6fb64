"""The receiver's content-addressed file cache: ``<root>/<sha256>``, capped, least-recently-used out.

Why content-addressed: a SLEAP package or video submitted again (a new job on the
same data, a retry after a failed job) is recognised by its SHA-256 in the offer
and never moves again -- on any path. Entries are only ever created from bytes
whose hash was verified, and are read-only, so an entry is trusted as-is.

Why LRU by mtime: the cache lives next to jobs on a worker's disk and must not
grow without bound (``transfer.cache_mb``). Every hit touches the entry's mtime;
eviction removes the oldest entries until the total fits, never the entry that
was just added (it is being placed at its destination right now). Destinations are
hard links or copies, so evicting an entry never removes a file a job is using.

All methods block (stat, rename, unlink): call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10240 * 1024 * 1024
_SHA = re.compile(r"[0-9a-f]{64}")


class ContentCache:
    def __init__(self, root: str | Path, max_bytes: int | None = DEFAULT_MAX_BYTES):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path | None:
        """The entry for ``sha256`` if present (no LRU touch)."""
        path = self.root / sha256
        return path if _SHA.fullmatch(sha256) and path.is_file() else None

    def get(self, sha256: str) -> Path | None:
        """The entry for ``sha256``, marked as just used."""
        path = self.path_of(sha256)
        if path is not None:
            try:
                os.utime(path)
            except OSError:
                pass
        return path

    def put(self, src: Path, sha256: str) -> Path:
        """Move the verified file ``src`` into the cache (same filesystem), then evict to the cap."""
        if not _SHA.fullmatch(sha256):
            raise ValueError("cache keys are sha256 hex digests")
        dest = self.root / sha256
        os.chmod(src, 0o444)
        os.replace(src, dest)
        os.utime(dest)
        self.evict(keep={sha256})
        return dest

    def entries(self) -> list[tuple[float, int, Path]]:
        """``(mtime, size, path)`` of every entry, oldest first."""
        out = []
        for path in self.root.iterdir():
            if _SHA.fullmatch(path.name):
                try:
                    st = path.stat()
                except OSError:
                    continue
                out.append((st.st_mtime, st.st_size, path))
        out.sort(key=lambda e: (e[0], e[2].name))
        return out

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def evict(self, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Remove least-recently-used entries until the total is within ``max_bytes``; returns their keys."""
        if self.max_bytes is None:
            return []
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        removed = []
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            if path.name in keep:
                continue
            try:
                path.unlink()
            except OSError as exc:
                log.warning("cache: could not evict %s: %s", path.name[:12], exc)
                continue
            total -= size
            removed.append(path.name)
        if removed:
            log.info("cache %s: evicted %d entries (LRU) to stay within %.0f MB; now %.0f MB", self.root, len(removed), self.max_bytes / 2**20, total / 2**20)
        return removed
