"""The receiver's disk: where incoming files are staged, verified, cached and placed. Blocking.

:class:`FileReceiver` writes into ``<partial>/<sha>.part`` (default
``<dest>/.sleap-rtc-partial``; a worker shares one folder across jobs) and records the
durable offset (after flush + fsync) in the sidecar ``<sha>.json``. At the end the
whole ``.part`` has been hashed (so verification covers bytes from every link), and it
is moved into the content-addressed cache ``<cache>/<sha>`` and linked into place under
its sanitized name with an atomic rename: a truncated or unverified file never appears
at the destination. Free space is checked against the announced size up front.

Every call here blocks: the drivers run them in ``asyncio.to_thread``.

Two process-wide objects, both injectable per receiver:

- :data:`CLAIMS` -- the ``.part`` files some link of this process is writing. Two jobs of
  one worker share a partial folder, so two links must not write the same content into one
  file; that is a fact about the process, hence one registry per process by default.
- :data:`DISK` -- the one read and the one write the transfer paths make on file
  contents. Tests replace them to inject ENOSPC, slow disks or corrupted reads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..protocol.transfer import FileOffer
from ..util.hashing import sha256_prefix
from . import shared
from .cache import DEFAULT_MAX_BYTES as DEFAULT_CACHE_MAX_BYTES
from .cache import ContentCache
from .errors import TransferError
from .transfer_core import DEFAULT_MAX_SIZE, Sidecar, resume_point

log = logging.getLogger(__name__)

FREE_SPACE_MARGIN = 16 * 1024 * 1024
PARTIAL_DIR = ".sleap-rtc-partial"
PARTIAL_MAX_AGE = 7 * 24 * 3600
CACHE_DIR = ".sleap-rtc-cache"


class DiskIO:
    """The reads and writes of file contents (the seam tests use for a full or corrupting disk)."""

    def read(self, fh: BinaryIO, size: int) -> bytes:
        return fh.read(size)

    def write(self, fh: BinaryIO, data: Any) -> None:
        fh.write(data)


DISK = DiskIO()


class PartClaims:
    """The ``.part`` files being written, so one content never has two writers."""

    def __init__(self) -> None:
        self._paths: set[Path] = set()
        self._lock = threading.Lock()

    def claim(self, part: Path) -> bool:
        with self._lock:
            if part in self._paths:
                return False
            self._paths.add(part)
            return True

    def release(self, part: Path) -> None:
        with self._lock:
            self._paths.discard(part)

    def __contains__(self, part: Path) -> bool:
        with self._lock:
            return part in self._paths


CLAIMS = PartClaims()


def open_at(path: Path, offset: int) -> BinaryIO:
    fh = open(path, "rb")
    fh.seek(offset)
    return fh


def materialize(cached: Path, target: Path) -> None:
    """Put the verified cache entry at ``target`` atomically (hard link, else copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.link(cached, tmp)
    except OSError:
        shutil.copyfile(cached, tmp)
    os.replace(tmp, target)


def partial_key(offer: FileOffer) -> str:
    """The name of ``offer``'s partial copy: the sender's resume key, else the digest, else (neither: no resume) the transfer."""
    if offer.resume_key:
        return f"rk-{offer.resume_key}"
    return offer.sha256 or f"tx-{offer.transfer_id}"


@dataclass
class Staged:
    """One incoming file on disk: its ``.part`` (open), sidecar, running hash and destination."""

    offer: FileOffer
    target: Path
    part: Path
    state: Path
    fh: BinaryIO
    claims: PartClaims
    io: DiskIO
    hasher: Any = field(default_factory=hashlib.sha256)

    def write(self, data: Any) -> None:
        """Append ``data`` and hash it (the digest covers exactly the bytes on disk)."""
        self.io.write(self.fh, data)
        self.hasher.update(data)

    def record(self, offset: int, *, sync: bool = True) -> None:
        """Make ``offset`` the resume point: fsync (what was flushed) and write the sidecar.

        The only writer of the sidecar. Safe beside a writer thread: fsync does not touch
        Python's buffer, so the recorded offset only ever trails the data."""
        if sync:
            os.fsync(self.fh.fileno())
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(Sidecar.of(self.offer, offset).encode())
        os.replace(tmp, self.state)

    def flush_and_record(self, offset: int) -> None:
        self.fh.flush()
        self.record(offset)

    @property
    def resumable(self) -> bool:
        """Whether a later offer can find this ``.part`` (named by digest or resume key, not by transfer)."""
        return bool(self.offer.sha256 or self.offer.resume_key)

    def close(self, record_at: int | None = None) -> None:
        """Close the ``.part`` (recording ``record_at`` as the resume point first) and release it.

        A ``.part`` that no later offer could resume is deleted instead of left for the sweep."""
        if not self.resumable:
            return self.discard()
        try:
            if record_at is not None:
                self.flush_and_record(record_at)
        except OSError as exc:
            log.warning("could not record resume state for %s: %s", self.offer.name, exc)
        finally:
            try:
                self.fh.close()
            except OSError:
                pass
            self.claims.release(self.part)

    def discard(self) -> None:
        """The file arrived another way (shared storage), or corrupted: drop the staging copy."""
        try:
            self.fh.close()
        except OSError:
            pass
        self.claims.release(self.part)
        self.part.unlink(missing_ok=True)
        self.state.unlink(missing_ok=True)


class FileReceiver:
    """Where incoming files go, and the limits that apply to them (one per link or shared).

    ``partial_dir`` (default ``<dest>/.sleap-rtc-partial``) holds the resumable copies,
    keyed by sha256: a worker points every job's receiver at one folder so an upload
    interrupted in one job resumes in the next submission of the same package. Copies
    nobody resumed for ``partial_max_age`` seconds are deleted when a receiver opens
    the folder, so abandoned uploads do not fill the disk.
    """

    def __init__(
        self,
        dest_dir: str | Path,
        *,
        cache_dir: str | Path | None = None,
        partial_dir: str | Path | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        cache_max_bytes: int | None = DEFAULT_CACHE_MAX_BYTES,
        partial_max_age: float = PARTIAL_MAX_AGE,
        claims: PartClaims = CLAIMS,
        io: DiskIO = DISK,
    ):
        self.dest_dir = Path(dest_dir)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.dest_dir / CACHE_DIR
        self.partial_dir = Path(partial_dir) if partial_dir is not None else self.dest_dir / PARTIAL_DIR
        self.max_size = max_size
        self.claims = claims
        self.io = io
        for d in (self.dest_dir, self.cache_dir, self.partial_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.cache = ContentCache(self.cache_dir, cache_max_bytes)
        self.sweep_partials(partial_max_age)

    def sweep_partials(self, max_age: float) -> list[Path]:
        """Delete partial copies (and their sidecars) untouched for ``max_age`` seconds; returns what went."""
        cutoff = time.time() - max_age
        removed = []
        for path in self.partial_dir.iterdir():
            part = path.with_name(path.name.split(".", 1)[0] + ".part")
            try:
                if part in self.claims or path.stat().st_mtime >= cutoff:
                    continue
                path.unlink()
            except OSError:
                continue
            removed.append(path)
        if removed:
            log.info("removed %d stale partial file(s) older than %.1f days from %s", len(removed), max_age / 86400, self.partial_dir)
        return removed

    def cached_path(self, sha256: str) -> Path | None:
        """The verified cache entry for ``sha256``, if this receiver holds one."""
        return self.cache.path_of(sha256)

    def place_cached(self, sha256: str, size: int, target: Path) -> bool:
        """Put the cached copy of ``sha256`` at ``target``; False when none of that size is cached."""
        cached = self.cache.get(sha256)
        if cached is None or cached.stat().st_size != size:
            return False
        materialize(cached, target)
        return True

    def open(self, offer: FileOffer, target: Path) -> tuple[Staged, int]:
        """Stage ``offer`` for writing: the open ``.part`` and the offset to resume from.

        :class:`TransferError` ``busy`` when another link of this process is writing the same
        content; ``disk_full`` when the rest cannot fit; ``OSError`` from the disk."""
        key = partial_key(offer)
        part = self.partial_dir / f"{key}.part"
        state = self.partial_dir / f"{key}.json"
        if not self.claims.claim(part):
            raise TransferError("busy", f"{offer.name!r}: the same content is already being received here by another transfer")
        try:
            return self._open_claimed(offer, target, part, state)
        except BaseException:
            self.claims.release(part)
            raise

    def _open_claimed(self, offer: FileOffer, target: Path, part: Path, state: Path) -> tuple[Staged, int]:
        try:
            text: str | None = state.read_text()
            part_size: int | None = part.stat().st_size
        except (OSError, ValueError):
            text = part_size = None
        offset = resume_point(text, offer, part_size)
        free = shutil.disk_usage(self.partial_dir).free
        needed = offer.size - offset
        if free < needed + FREE_SPACE_MARGIN:
            raise TransferError(
                "disk_full",
                f"not enough space on the receiver: {needed / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free in {self.dest_dir}",
            )
        fh = open(part, "r+b" if offset and part.exists() else "wb")
        fh.truncate(offset)
        fh.seek(offset)
        hasher = sha256_prefix(part, offset) if offset else hashlib.sha256()
        staged = Staged(offer, target, part, state, fh, self.claims, self.io, hasher)
        staged.record(offset, sync=False)
        return staged, offset

    def finish(self, staged: Staged, expected: str | None = None) -> str:
        """Close the complete ``.part``; when its digest is ``expected`` (default: the offer's), cache it
        and place it. Returns the digest (the incremental one: the bytes were hashed as they were written)."""
        expected = staged.offer.sha256 if expected is None else expected
        try:
            staged.fh.close()  # flushes the last buffered bytes: a full disk shows here
        finally:
            staged.claims.release(staged.part)
        digest = staged.hasher.hexdigest()
        if not expected or digest != expected:
            staged.part.unlink(missing_ok=True)
            staged.state.unlink(missing_ok=True)
            return digest
        cached = self.cache.put(staged.part, expected)
        staged.state.unlink(missing_ok=True)
        materialize(cached, staged.target)
        return digest

    def adopt_shared(self, src: Path, staged: Staged, on_progress: Callable[[int], Any] | None = None) -> Path:
        """Copy a verified file from shared storage into the cache and place it at the target."""
        tmp = self.partial_dir / f"{staged.offer.sha256}.shared"
        shared.copy_verified(src, tmp, staged.offer.sha256, staged.offer.size, on_progress)
        cached = self.cache.put(tmp, staged.offer.sha256)
        staged.discard()
        materialize(cached, staged.target)
        return cached
