"""Streamed, hashed, resumable file transfer over a :class:`PeerLink`.

Sender: hash the file (SHA-256, in a thread), ``file_offer`` it, and stream binary
chunks from the offset the receiver answers with. Each chunk is one data-channel
message: a 28-byte header (magic, transfer id, offset) and up to 64 KiB of data.

Receiver (:class:`FileReceiver`): writes into ``<partial>/<sha>.part`` (default
``<dest>/.sleap-rtc-partial``; a worker shares one folder across jobs) and records the
durable offset (after flush + fsync) in ``<sha>.json`` every
``ACK_EVERY`` bytes and when the link drops. An offer of the same content on a new
link resumes from that offset -- the *resume exchange* is ``file_offer`` ->
``file_accept(offset)``. At ``file_end`` the whole ``.part`` is hashed (so
verification covers bytes from every link), then moved into the content-addressed
cache ``<cache>/<sha>`` and linked into place under its sanitized name with an
atomic rename: a truncated or unverified file never appears at the destination.
An offer whose sha256 is already cached is answered ``file_accept(cached=true)``:
one round trip, no bytes.

Disk full: free space is checked against the announced size up front, and
``ENOSPC`` while writing is answered with ``file_reject(code="disk_full")``. The
``.part`` and its sidecar are *kept* (at the last durable offset) so the transfer
resumes once space is freed.

All file IO and hashing run in ``asyncio.to_thread``; memory use is one chunk per
side plus the transport's send buffer. The receiver hashes while it writes (the
prefix of a resumed ``.part`` is hashed from disk when it is reopened), so the
digest compared at ``file_end`` covers exactly the bytes on disk without a second
pass over a multi-GB file.

Faster paths (:mod:`.fastpath`): on links opened with them enabled, a transfer may
instead move as a path on shared storage (:mod:`.shared`) or over a direct TLS
stream (:mod:`.direct`); they write into the same ``.part`` through the same
hashing writer, so resume, verification, the cache and the size/disk checks are
the same whatever path the bytes took. ``SentFile.via`` / ``ReceivedFile.via`` say
which path was used.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import ssl
import struct
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

from ..protocol.transfer import (
    DirectOffer,
    FileAccept,
    FileAck,
    FileCancel,
    FileDone,
    FileEnd,
    FileOffer,
    FileReject,
    FileViaPath,
    PathFailed,
)
from . import bulk_io, direct, shared
from .cache import DEFAULT_MAX_BYTES as DEFAULT_CACHE_MAX_BYTES
from .cache import ContentCache
from .errors import LinkClosedError, TransferError
from .fastpath import DIRECT, SHARED, VIA_CACHE, VIA_DATACHANNEL, VIA_DIRECT, VIA_SHARED

if TYPE_CHECKING:
    from .link import PeerLink

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
ACK_EVERY = 4 * 1024 * 1024
SEND_WINDOW = 16 * 1024 * 1024
DIRECT_DURABLE_EVERY = 64 * 1024 * 1024
DIRECT_FAIL_WAIT = 30.0
DEFAULT_MAX_SIZE = 20 * 1024**3
HASH_BLOCK = 1024 * 1024
FREE_SPACE_MARGIN = 16 * 1024 * 1024
MAGIC = b"SRF1"
HEADER = struct.Struct("!4s16sQ")
PARTIAL_DIR = ".sleap-rtc-partial"
PARTIAL_MAX_AGE = 7 * 24 * 3600
CACHE_DIR = ".sleap-rtc-cache"

Progress = Callable[[int, int], Any]


@dataclass
class SentFile:
    """What a ``send_file`` did. ``via``: cache, shared, direct or datachannel; ``fallback``: why a faster path was not used."""

    sha256: str
    size: int
    name: str
    resumed_from: int = 0
    bytes_sent: int = 0
    cached: bool = False
    via: str = VIA_DATACHANNEL
    seconds: float = 0.0
    fallback: str = ""

    @property
    def mb_per_s(self) -> float:
        """Payload MB per second of the transfer (after hashing), 0 when nothing moved."""
        moved = self.size - self.resumed_from
        return moved / 1e6 / self.seconds if self.seconds > 0 and moved > 0 and not self.cached else 0.0

    def summary(self) -> str:
        """One line for the user and the log, e.g. ``pkg.slp 1024.0 MB via direct at 412.3 MB/s``."""
        if self.cached:
            return f"{self.name} {self.size / 1e6:.1f} MB already on the receiver (cache): nothing sent"
        line = f"{self.name} {self.size / 1e6:.1f} MB via {self.via} at {self.mb_per_s:.1f} MB/s"
        if self.resumed_from:
            line += f" (resumed at {self.resumed_from / 1e6:.1f} MB)"
        return line + (f"; {self.fallback}" if self.fallback else "")


@dataclass
class ReceivedFile:
    path: Path
    name: str
    sha256: str
    size: int
    cached: bool = False
    resumed_from: int = 0
    via: str = VIA_DATACHANNEL


# -- names -------------------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:")


def sanitize_name(name: str) -> str:
    """A safe relative POSIX path for ``name``, or :class:`TransferError` ``bad_name``.

    Refused: empty names, NUL and control characters, backslashes, absolute paths,
    drive letters, empty/``.``/``..`` components (zip-slip), and the receiver's own
    reserved ``.sleap-rtc*`` folders.
    """

    def bad(why: str) -> TransferError:
        return TransferError("bad_name", f"refused file name {name[:80]!r}: {why}")

    if not name:
        raise bad("empty name")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise bad("contains NUL or control characters")
    if "\\" in name:
        raise bad("backslashes are not allowed; use '/' between folders")
    if _DRIVE.match(name):
        raise bad("drive letters are not allowed; send a relative path")
    if name.startswith("/"):
        raise bad("absolute paths are not allowed; send a relative path")
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise bad("'.', '..' and empty path components are not allowed")
        if len(part.encode()) > 255:
            raise bad("a path component is longer than 255 bytes")
    if parts[0].lower().startswith(".sleap-rtc"):
        raise bad("names under .sleap-rtc* are reserved")
    return "/".join(parts)


def resolve_inside(root: Path, name: str) -> Path:
    """``root / sanitize_name(name)``, refusing anything that resolves outside ``root`` (symlinks)."""
    rel = sanitize_name(name)
    root = root.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise TransferError("bad_name", f"refused file name {name[:80]!r}: it resolves outside the destination folder")
    return target


# -- blocking helpers (run in threads) ------------------------------------------


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


_hash_memo: dict[tuple, str] = {}


def stat_and_hash(path: Path) -> tuple[int, str]:
    """Size and sha256 of ``path``, memoised on (path, inode, size, mtime) so a resubmission hashes nothing."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _hash_memo.get(key)
    if digest is None:
        digest = sha256_file(path)
        if len(_hash_memo) > 4096:
            _hash_memo.clear()
        _hash_memo[key] = digest
    return st.st_size, digest


def _write_chunk(fh: BinaryIO, data: bytes) -> None:
    """The single write seam of the receiver (tests inject ENOSPC here)."""
    fh.write(data)


def _write_and_hash(inc: "_Incoming", data) -> None:
    _write_chunk(inc.fh, data)
    inc.hasher.update(data)


def _sync(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def _read_chunk(fh: BinaryIO, size: int) -> bytes:
    return fh.read(size)


def _open_at(path: Path, offset: int) -> BinaryIO:
    fh = open(path, "rb")
    fh.seek(offset)
    return fh


def _pump_and_close(stream: "direct.DirectStream", fh: BinaryIO, pos: int, size: int, read, on_block) -> int:
    """Blocking, on the send thread, which owns the stream and the file handle from here on."""
    try:
        return bulk_io.send_region(stream, fh, pos, size, read, on_block, DIRECT_FAIL_WAIT)
    finally:
        stream.close()
        fh.close()


def _materialize(cached: Path, target: Path) -> None:
    """Put the verified cache entry at ``target`` atomically (hard link, else copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.link(cached, tmp)
    except OSError:
        shutil.copyfile(cached, tmp)
    os.replace(tmp, target)


# -- receiver ----------------------------------------------------------------------


@dataclass
class _Incoming:
    offer: FileOffer
    target: Path
    part: Path
    state: Path
    fh: BinaryIO
    offset: int
    durable: int
    resumed_from: int
    hasher: Any = field(default_factory=hashlib.sha256)
    listener: direct.DirectListener | None = None
    stream: direct.DirectStream | None = None
    pump: asyncio.Future | None = None
    direct_active: bool = False
    via: str = VIA_DATACHANNEL


class _Writing:
    """The ``.part`` files some link of this process is writing: two links sharing a partial
    folder (two jobs of one worker) must not write the same content into one file."""

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


_writing = _Writing()


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
    ):
        self.dest_dir = Path(dest_dir)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.dest_dir / CACHE_DIR
        self.partial_dir = Path(partial_dir) if partial_dir is not None else self.dest_dir / PARTIAL_DIR
        self.max_size = max_size
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
                if part in _writing or path.stat().st_mtime >= cutoff:
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

    def _resume_point(self, offer: FileOffer, part: Path, state: Path) -> int:
        try:
            data = json.loads(state.read_text())
            offset = int(data["offset"])
            if data.get("sha256") != offer.sha256 or int(data["size"]) != offer.size:
                return 0
            if 0 <= offset <= offer.size and part.stat().st_size >= offset:
                return offset
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return 0

    def _open(self, offer: FileOffer, target: Path) -> _Incoming:
        part = self.partial_dir / f"{offer.sha256}.part"
        state = self.partial_dir / f"{offer.sha256}.json"
        if not _writing.claim(part):
            raise TransferError("busy", f"{offer.name!r}: the same content is already being received here by another transfer")
        try:
            return self._open_claimed(offer, target, part, state)
        except BaseException:
            _writing.release(part)
            raise

    def _open_claimed(self, offer: FileOffer, target: Path, part: Path, state: Path) -> _Incoming:
        offset = self._resume_point(offer, part, state)
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
        _write_state(state, {"sha256": offer.sha256, "size": offer.size, "name": offer.name, "offset": offset})
        return _Incoming(offer, target, part, state, fh, offset, offset, offset, hasher)

    def _record(self, inc: _Incoming) -> None:
        _sync(inc.fh)
        _write_state(inc.state, {"sha256": inc.offer.sha256, "size": inc.offer.size, "name": inc.offer.name, "offset": inc.offset})

    def _finish(self, inc: _Incoming) -> bool:
        try:
            inc.fh.close()
        finally:
            _writing.release(inc.part)
        if inc.hasher.hexdigest() != inc.offer.sha256:
            inc.part.unlink(missing_ok=True)
            inc.state.unlink(missing_ok=True)
            return False
        cached = self.cache.put(inc.part, inc.offer.sha256)
        inc.state.unlink(missing_ok=True)
        _materialize(cached, inc.target)
        return True

    def _discard(self, inc: _Incoming) -> None:
        """The file arrived another way (shared storage): drop the staging copy."""
        try:
            inc.fh.close()
        except OSError:
            pass
        _writing.release(inc.part)
        inc.part.unlink(missing_ok=True)
        inc.state.unlink(missing_ok=True)

    def _adopt_shared(self, src: Path, inc: _Incoming, on_progress: Callable[[int], Any] | None = None) -> Path:
        """Copy a verified file from shared storage into the cache and place it at the target."""
        tmp = self.partial_dir / f"{inc.offer.sha256}.shared"
        shared.copy_verified(src, tmp, inc.offer.sha256, inc.offer.size, on_progress)
        cached = self.cache.put(tmp, inc.offer.sha256)
        self._discard(inc)
        _materialize(cached, inc.target)
        return cached


# -- per-link transfer engine ---------------------------------------------------------


class _Outgoing:
    def __init__(self) -> None:
        self.replies: asyncio.Queue = asyncio.Queue()
        self.error: BaseException | None = None
        self.direct: DirectOffer | None = None
        self.acked = 0
        self.ack_event = asyncio.Event()

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.replies.put_nowait(exc)
        self.ack_event.set()

    def on_ack(self, offset: int) -> None:
        self.acked = max(self.acked, offset)
        self.ack_event.set()

    async def window(self, offset: int) -> None:
        """Wait while more than ``SEND_WINDOW`` bytes are unacknowledged: the receiver's disk and hash
        set the pace, so a fast link never piles the file up in the receiver's memory."""
        while offset - self.acked > SEND_WINDOW and self.error is None:
            self.ack_event.clear()
            await self.ack_event.wait()

    async def ack_or(self, fut: asyncio.Future) -> None:
        """Wait until ``fut`` is done or a ``file_ack`` or failure arrives (whichever is first)."""
        woken = asyncio.ensure_future(self.ack_event.wait())
        try:
            await asyncio.wait({fut, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
        self.ack_event.clear()

    async def next(self):
        item = await self.replies.get()
        if isinstance(item, BaseException):
            raise item
        return item


class Transfers:
    """Both directions of file transfer for one link; driven by the link's pump.

    ``direct_redirect`` is a test hook: ``(host, port) -> (host, port)`` applied to a
    received ``direct_offer`` (to point the sender at a blocked port or a tampering relay).
    """

    def __init__(self, link: "PeerLink"):
        self.link = link
        self.receiver: FileReceiver | None = None
        self.received: asyncio.Queue[ReceivedFile] = asyncio.Queue()
        self._outgoing: dict[str, _Outgoing] = {}
        self._incoming: dict[str, _Incoming] = {}
        self._identity: direct.TlsIdentity | None = None
        self._identity_lock = asyncio.Lock()
        self.direct_redirect: Callable[[str, int], tuple[str, int]] | None = None

    # -- which paths this link may use ---------------------------------------------
    def _both(self, feature: str) -> bool:
        return feature in self.link.fastpaths.features() and feature in self.link.remote_features

    # sender side
    async def send_file(self, path: Path, *, name: str | None, progress: Progress | None) -> SentFile:
        name = sanitize_name(name if name is not None else path.name)
        size, sha = await asyncio.to_thread(stat_and_hash, path)
        tid = uuid.uuid4().hex
        out = _Outgoing()
        self._outgoing[tid] = out
        result = SentFile(sha256=sha, size=size, name=name)
        try:
            self.link._send(FileOffer(transfer_id=tid, name=name, size=size, sha256=sha))
            started = time.monotonic()
            reply = await self._reply(out, (FileAccept,))
            if reply.cached:
                result.cached, result.via = True, VIA_CACHE
                log.info("send %s: receiver already has %s (cache hit)", name, sha[:12])
                if progress:
                    progress(size, size)
                return result
            if not 0 <= reply.offset <= size:
                raise TransferError("bad_frame", f"receiver asked to resume at {reply.offset}, beyond the file size {size}")
            offset = result.resumed_from = reply.offset
            if offset:
                log.info("send %s: resuming at %d of %d bytes", name, offset, size)
            if self._both(SHARED) and await self._send_shared(out, tid, path, result, progress):
                result.seconds = time.monotonic() - started
                if progress:
                    progress(size, size)
                log.info("sent %s", result.summary())
                return result
            if out.direct is not None and self.link.fastpaths.direct:
                offset = await self._send_direct(out, tid, path, offset, size, progress, result)
            if offset < size or result.via != VIA_DIRECT:
                if result.via == VIA_DIRECT:
                    result.via = f"{VIA_DIRECT}+{VIA_DATACHANNEL}"
                await self._send_chunks(out, tid, path, offset, size, progress, result)
            self.link._send(FileEnd(transfer_id=tid, size=size))
            await self._reply(out, (FileDone,))
            result.seconds = time.monotonic() - started
            log.info("sent %s, sha256 %s verified by the receiver", result.summary(), sha[:12])
            return result
        except LinkClosedError as exc:
            raise LinkClosedError(f"{exc} during transfer of {name}; reconnect and send again to resume") from None
        finally:
            self._outgoing.pop(tid, None)

    async def _send_chunks(self, out: "_Outgoing", tid: str, path: Path, offset: int, size: int, progress: Progress | None, result: SentFile) -> None:
        fh = await asyncio.to_thread(_open_at, path, offset)
        try:
            tid_bytes = bytes.fromhex(tid)
            transport = self.link.transport
            chunk_size = transport.chunk_payload(HEADER.size, CHUNK_SIZE) if hasattr(transport, "chunk_payload") else CHUNK_SIZE
            out.on_ack(offset)
            while offset < size:
                await out.window(offset)
                if out.error is not None:
                    raise out.error
                data = await asyncio.to_thread(_read_chunk, fh, min(chunk_size, size - offset))
                if not data:
                    raise TransferError("io_error", f"{path} shrank while it was being sent")
                await transport.send_bytes(HEADER.pack(MAGIC, tid_bytes, offset) + data)
                offset += len(data)
                result.bytes_sent += len(data)
                if progress:
                    progress(offset, size)
        finally:
            await asyncio.to_thread(fh.close)

    async def _send_direct(self, out: "_Outgoing", tid: str, path: Path, offset: int, size: int, progress: Progress | None, result: SentFile) -> int:
        """Stream ``[offset, size)`` over the direct path; returns where the data channel must continue."""
        offer: DirectOffer = out.direct
        host, port = offer.host, offer.port
        if self.direct_redirect is not None:
            host, port = self.direct_redirect(host, port)
        try:
            stream = await direct.open_stream(host, port, offer.cert_sha256, offer.token, tid, offset, size - offset, self.link.fastpaths.direct_timeout)
        except direct.DirectPathError as exc:
            result.fallback = f"direct path unavailable ({exc}); used the data channel"
            log.warning("send %s: %s", result.name, result.fallback)
            return offset
        result.via = VIA_DIRECT
        loop = asyncio.get_running_loop()
        sent = [offset]

        def on_block(pos: int) -> None:
            sent[0] = pos
            if progress:
                loop.call_soon_threadsafe(progress, pos, size)

        try:
            fh = await asyncio.to_thread(_open_at, path, offset)
        except OSError:
            stream.close()
            raise
        pump = direct.in_thread(_pump_and_close, stream, fh, offset, size, _read_chunk, on_block, name="sleap-rtc-direct-send")
        try:
            acked = await self._until_failed(out, pump, stream)
            if acked != size:
                raise direct.DirectPathError("receiver acknowledged a different length")
            return size
        except EOFError as exc:
            raise TransferError("io_error", f"{path}: {exc}") from None
        except (direct.DirectPathError, OSError) as exc:  # ssl.SSLError and socket.timeout are OSErrors
            if out.error is not None:
                raise out.error
            why = str(exc) or type(exc).__name__
            log.warning("send %s: direct stream broke at %d of %d bytes (%s); waiting for the receiver's resume point", result.name, sent[0], size, why)
            try:
                failed = await asyncio.wait_for(self._reply(out, (PathFailed,)), DIRECT_FAIL_WAIT)
            except asyncio.TimeoutError:
                raise TransferError("direct_failed", f"direct stream broke ({why}) and the receiver gave no resume point; send again to resume") from None
            result.fallback = f"direct stream broke ({failed.reason}); continued on the data channel at {failed.offset / 1e6:.1f} MB"
            return failed.offset
        finally:
            result.bytes_sent += sent[0] - offset

    @staticmethod
    async def _until_failed(out: "_Outgoing", pump: asyncio.Future, stream: direct.DirectStream):
        """Await the send thread; a receiver refusal or our cancellation aborts the stream under it."""
        try:
            while not pump.done():
                await out.ack_or(pump)
                if out.error is not None:
                    stream.abort()
                    await asyncio.gather(pump, return_exceptions=True)
                    raise out.error
        except asyncio.CancelledError:
            stream.abort()
            raise
        return pump.result()

    async def _send_shared(self, out: "_Outgoing", tid: str, path: Path, result: SentFile, progress: Progress | None = None) -> bool:
        """Offer the file as a path on shared storage; False (fall back to bytes) unless the receiver took it."""
        mapped = shared.map_path(self.link.fastpaths, self.link.role, path)
        if mapped is None:
            return False
        local_root, remote_root, remote_path = mapped
        try:
            probe, probe_name, probe_sha = await asyncio.to_thread(shared.write_probe, local_root)
        except OSError as exc:
            result.fallback = f"shared path {local_root} not writable for the probe ({exc.strerror or exc})"
            log.warning("send %s: %s; sending bytes", result.name, result.fallback)
            return False
        try:
            remote_probe = f"{remote_root.rstrip('/')}/{probe_name}"
            self.link._send(FileViaPath(transfer_id=tid, path=remote_path, probe_path=remote_probe, probe_sha256=probe_sha))
            reply = await self._reply_with_progress(out, (FileDone, PathFailed), result.size, progress)
        finally:
            await asyncio.to_thread(probe.unlink, True)
        if isinstance(reply, PathFailed):
            result.fallback = f"shared storage not usable: {reply.reason}"
            log.warning("send %s: %s; sending bytes", result.name, result.fallback)
            return False
        result.via = VIA_SHARED
        return True

    async def _reply_with_progress(self, out: "_Outgoing", want: tuple[type, ...], size: int, progress: Progress | None):
        """:meth:`_reply`, reporting the receiver's ``file_ack`` offsets meanwhile (a copy made on its side)."""
        reply = asyncio.ensure_future(self._reply(out, want))
        try:
            while not reply.done():
                await out.ack_or(reply)
                if progress and out.acked and not reply.done():
                    progress(min(out.acked, size), size)
        finally:
            reply.cancel()
        return reply.result()

    async def _reply(self, out: "_Outgoing", want: tuple[type, ...]):
        while True:
            msg = await out.next()
            if isinstance(msg, FileReject):
                raise TransferError(msg.code, f"receiver refused the file: {msg.message}")
            if isinstance(msg, DirectOffer):
                out.direct = msg
                continue
            if isinstance(msg, want):
                return msg

    def fail_outgoing(self, exc: BaseException) -> None:
        for out in self._outgoing.values():
            out.fail(exc)

    # receiver side
    def _reject(self, tid: str, code: str, message: str) -> None:
        log.warning("file transfer %s refused: %s: %s", tid[:8], code, message)
        try:
            self.link._send(FileReject(transfer_id=tid, code=code, message=message))
        except LinkClosedError:
            pass

    async def on_control(self, msg) -> None:
        if isinstance(msg, (FileAccept, FileAck, FileDone, FileReject, DirectOffer, PathFailed)):
            out = self._outgoing.get(msg.transfer_id)
            if out is None:
                return
            if isinstance(msg, FileReject):
                out.fail(TransferError(msg.code, f"receiver refused the file: {msg.message}"))
            elif isinstance(msg, FileAck):
                out.on_ack(msg.offset)
            else:
                out.replies.put_nowait(msg)
        elif isinstance(msg, FileOffer):
            await self._on_offer(msg)
        elif isinstance(msg, FileViaPath):
            await self._on_via_path(msg)
        elif isinstance(msg, FileEnd):
            await self._on_end(msg)
        elif isinstance(msg, FileCancel):
            inc = self._incoming.pop(msg.transfer_id, None)
            if inc is not None:
                await self._halt(inc)
                await asyncio.to_thread(self._close_incoming, inc)

    async def _on_offer(self, offer: FileOffer) -> None:
        rx = self.receiver
        tid = offer.transfer_id
        if rx is None:
            return self._reject(tid, "not_accepting", "this peer is not accepting files on this link")
        try:
            target = resolve_inside(rx.dest_dir, offer.name)
        except TransferError as exc:
            return self._reject(tid, exc.code, str(exc))
        if offer.size > rx.max_size:
            return self._reject(tid, "too_large", f"{offer.name!r} is {offer.size} bytes; this receiver accepts at most {rx.max_size}")
        if any(i.offer.sha256 == offer.sha256 for i in self._incoming.values()):
            return self._reject(tid, "busy", "the same content is already being received on this link")
        cached = await asyncio.to_thread(rx.cache.get, offer.sha256)
        if cached is not None and cached.stat().st_size == offer.size:
            try:
                await asyncio.to_thread(_materialize, cached, target)
            except OSError as exc:
                return self._reject(tid, "io_error", f"could not place cached copy: {exc}")
            self.link._send(FileAccept(transfer_id=tid, cached=True))
            self.received.put_nowait(ReceivedFile(target, offer.name, offer.sha256, offer.size, cached=True, via=VIA_CACHE))
            log.info("receive %s: cache hit %s", offer.name, offer.sha256[:12])
            return
        try:
            inc = await asyncio.to_thread(rx._open, offer, target)
        except TransferError as exc:
            return self._reject(tid, exc.code, str(exc))
        except OSError as exc:
            code = "disk_full" if exc.errno == errno.ENOSPC else "io_error"
            return self._reject(tid, code, f"cannot stage {offer.name!r}: {exc.strerror or exc}")
        self._incoming[tid] = inc
        if inc.offset:
            log.info("receive %s: resuming at %d of %d bytes", offer.name, inc.offset, offer.size)
        if inc.offset < offer.size and self._both(DIRECT):
            await self._offer_direct(tid, inc)
        self.link._send(FileAccept(transfer_id=tid, offset=inc.offset))

    # -- direct path, receiver side ---------------------------------------------------
    async def _offer_direct(self, tid: str, inc: _Incoming) -> None:
        host = direct.direct_host(getattr(self.link.transport, "pc", None))
        if host is None:
            log.info("receive %s: ICE pair is not host-to-host; no direct path", inc.offer.name)
            return
        try:
            async with self._identity_lock:
                if self._identity is None:
                    self._identity = await asyncio.to_thread(direct.TlsIdentity.generate)
            listener = direct.DirectListener(tid, self._identity, lambda stream, o, n: self._on_direct_stream(tid, stream, o, n))
            await listener.start(host)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("receive %s: cannot open a direct listener on %s (%s); data channel only", inc.offer.name, host, exc)
            return
        inc.listener = listener
        self.link._send(DirectOffer(transfer_id=tid, host=host, port=listener.port, token=listener.token, cert_sha256=self._identity.fingerprint))

    @staticmethod
    def _stop_listening(inc: _Incoming) -> None:
        """No more direct streams for ``inc``: close its listener and break off a stream still running."""
        if inc.listener is not None:
            inc.listener.close()
            inc.listener = None
        if inc.stream is not None:
            inc.stream.abort()

    async def _halt(self, inc: _Incoming) -> None:
        """No more bytes for ``inc``: stop listening, break off a running direct stream and let
        its pipeline drain, so the file is closed and its resume point recorded after the last write."""
        self._stop_listening(inc)
        if inc.pump is not None and not inc.pump.done():
            await asyncio.wait({inc.pump}, timeout=DIRECT_FAIL_WAIT)

    @staticmethod
    def _sync_upto(inc: _Incoming, offset: int) -> None:
        """Blocking: fsync what was flushed up to ``offset`` and record it as the resume point.

        Runs beside the writer (fsync does not touch Python's buffer), so the network
        stream never waits for the disk: the recorded offset only ever trails the data.
        """
        os.fsync(inc.fh.fileno())
        _write_state(inc.state, {"sha256": inc.offer.sha256, "size": inc.offer.size, "name": inc.offer.name, "offset": offset})
        inc.durable = offset

    @classmethod
    def _receive_direct(cls, inc: _Incoming, stream: direct.DirectStream, length: int) -> None:
        """Blocking, on the stream's thread: the receive pipeline, plus a background fsync every ``DIRECT_DURABLE_EVERY``."""
        syncer = ThreadPoolExecutor(1, thread_name_prefix="sleap-rtc-direct-fsync")
        syncing: list[Future] = []

        def write(view: memoryview) -> None:
            try:
                _write_chunk(inc.fh, view)
            except OSError as exc:
                raise bulk_io.SinkFailed(exc) from None
            inc.offset += len(view)
            if inc.offset - inc.durable >= DIRECT_DURABLE_EVERY and (not syncing or syncing[-1].done()):
                inc.fh.flush()
                syncing.append(syncer.submit(cls._sync_upto, inc, inc.offset))

        try:
            bulk_io.pipeline(stream.recv_exactly, length, write, inc.hasher.update)
        finally:
            syncer.shutdown()
        for fut in syncing:
            if isinstance(fut.exception(), OSError):
                raise bulk_io.SinkFailed(fut.exception())

    async def _on_direct_stream(self, tid: str, stream: direct.DirectStream, offset: int, length: int) -> None:
        inc = self._incoming.get(tid)
        if inc is None or inc.direct_active or offset != inc.offset or offset + length != inc.offer.size:
            stream.close()
            if inc is not None and not inc.direct_active:
                self._path_failed(tid, VIA_DIRECT, f"stream header at {offset}+{length} does not match {inc.offset} of {inc.offer.size}", inc.offset)
            return
        inc.direct_active, inc.via, inc.stream = True, VIA_DIRECT, stream
        name = inc.offer.name
        started = time.monotonic()
        pump = inc.pump = direct.in_thread(self._receive_direct, inc, stream, length, name="sleap-rtc-direct-recv")
        try:
            await pump
            inc.direct_active = False
            await asyncio.to_thread(stream.sock.sendall, direct.ACK.pack(inc.offset))
            seconds = time.monotonic() - started
            log.info("receive %s: %.1f MB over the direct path in %.2f s (%.1f MB/s)", name, length / 1e6, seconds, length / 1e6 / max(seconds, 1e-9))
        except asyncio.CancelledError:
            stream.abort()
            raise
        except bulk_io.SinkFailed as exc:
            inc.direct_active = False
            err = exc.error
            if err.errno == errno.ENOSPC:
                await self._abort(tid, "disk_full", f"receiver disk is full after {inc.durable} bytes of {name!r}; partial copy kept for resume")
            else:
                await self._abort(tid, "io_error", f"receiver write failed: {err.strerror or err}")
        except (OSError, ValueError) as exc:  # ssl.SSLError, a timeout, a reset; ValueError: link shut down mid-write
            inc.direct_active = False
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("receive %s: direct stream failed at %d of %d bytes (%s); asking for the rest on the data channel", name, inc.offset, inc.offer.size, why)
            if self._incoming.get(tid) is inc:
                self._path_failed(tid, VIA_DIRECT, why, inc.offset)
        finally:
            inc.stream = None
            if pump.done():
                stream.close()
            else:
                pump.add_done_callback(lambda _: stream.close())

    def _ack(self, tid: str, offset: int) -> None:
        try:
            self.link._send(FileAck(transfer_id=tid, offset=offset))
        except LinkClosedError:
            pass

    def _path_failed(self, tid: str, path: str, reason: str, offset: int) -> None:
        try:
            self.link._send(PathFailed(transfer_id=tid, path=path, reason=reason[:500], offset=offset))
        except LinkClosedError:
            pass

    # -- shared storage, receiver side ---------------------------------------------------
    async def _on_via_path(self, msg: FileViaPath) -> None:
        tid = msg.transfer_id
        inc = self._incoming.get(tid)
        if inc is None:
            return
        options, role = self.link.fastpaths, self.link.role
        try:
            if SHARED not in options.features():
                raise shared.SharedPathError("shared storage is not configured on this side")
            src = shared.allowed(options, role, msg.path)
            probe = shared.allowed(options, role, msg.probe_path)
            await asyncio.to_thread(shared.check_probe, probe, msg.probe_sha256)
            started = time.monotonic()
            loop = asyncio.get_running_loop()

            def copied(offset: int) -> None:  # the copy's progress, as file_ack, so the sender can show it
                loop.call_soon_threadsafe(self._ack, tid, offset)

            await asyncio.to_thread(self.receiver._adopt_shared, src, inc, copied)
        except (shared.SharedPathError, OSError) as exc:
            why = str(exc) if isinstance(exc, shared.SharedPathError) else f"copy failed: {exc.strerror or exc}"
            log.warning("receive %s: shared path refused: %s", inc.offer.name, why)
            return self._path_failed(tid, VIA_SHARED, why, inc.offset)
        self._incoming.pop(tid, None)
        self._stop_listening(inc)
        seconds = time.monotonic() - started
        self.link._send(FileDone(transfer_id=tid, sha256=inc.offer.sha256))
        self.received.put_nowait(ReceivedFile(inc.target, inc.offer.name, inc.offer.sha256, inc.offer.size, via=VIA_SHARED))
        log.info("received %s (%d bytes) from shared storage %s in %.2f s, sha256 verified", inc.offer.name, inc.offer.size, msg.path, seconds)

    # -- data channel, receiver side -------------------------------------------------------
    async def on_chunk(self, frame: bytes) -> None:
        if len(frame) < HEADER.size:
            return self.link._reply_error("bad_frame", "binary frame shorter than its header")
        magic, tid_bytes, offset = HEADER.unpack_from(frame)
        tid = tid_bytes.hex()
        if magic != MAGIC:
            return self.link._reply_error("bad_frame", "binary frame with an unknown header")
        inc = self._incoming.get(tid)
        if inc is None:
            return  # a transfer already refused or cancelled: drop its in-flight chunks
        data = memoryview(frame)[HEADER.size :]
        if inc.direct_active or offset != inc.offset or offset + len(data) > inc.offer.size:
            await self._abort(tid, "bad_frame", f"chunk at offset {offset} (+{len(data)}) does not follow {inc.offset} of {inc.offer.size}")
            return
        try:
            await asyncio.to_thread(_write_and_hash, inc, data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                await self._abort(tid, "disk_full", f"receiver disk is full after {inc.durable} bytes of {inc.offer.name!r}; partial copy kept for resume")
            else:
                await self._abort(tid, "io_error", f"receiver write failed: {exc.strerror or exc}")
            return
        inc.offset += len(data)
        if inc.via == VIA_DIRECT:
            inc.via = f"{VIA_DIRECT}+{VIA_DATACHANNEL}"
        if inc.offset - inc.durable >= ACK_EVERY:
            await asyncio.to_thread(self.receiver._record, inc)
            inc.durable = inc.offset
            self.link._send(FileAck(transfer_id=tid, offset=inc.offset))

    async def _abort(self, tid: str, code: str, message: str) -> None:
        """Stop receiving ``tid``; keep the .part at its last durable offset for a later resume."""
        inc = self._incoming.pop(tid, None)
        if inc is not None:
            await self._halt(inc)
            await asyncio.to_thread(self._close_incoming, inc)
        self._reject(tid, code, message)

    @staticmethod
    def _close_incoming(inc: _Incoming, record: bool = False) -> None:
        try:
            if record:
                _sync(inc.fh)
                _write_state(inc.state, {"sha256": inc.offer.sha256, "size": inc.offer.size, "name": inc.offer.name, "offset": inc.offset})
        except OSError as exc:
            log.warning("could not record resume state for %s: %s", inc.offer.name, exc)
        finally:
            try:
                inc.fh.close()
            except OSError:
                pass
            _writing.release(inc.part)

    async def _on_end(self, end: FileEnd) -> None:
        inc = self._incoming.get(end.transfer_id)
        if inc is None:
            return
        if inc.direct_active or inc.offset != inc.offer.size or end.size != inc.offer.size:
            return await self._abort(end.transfer_id, "bad_frame", f"file_end after {inc.offset} of {inc.offer.size} bytes")
        del self._incoming[end.transfer_id]
        self._stop_listening(inc)
        try:
            ok = await asyncio.to_thread(self.receiver._finish, inc)
        except OSError as exc:
            code = "disk_full" if exc.errno == errno.ENOSPC else "io_error"
            return self._reject(end.transfer_id, code, f"could not store {inc.offer.name!r}: {exc.strerror or exc}")
        if not ok:
            return self._reject(end.transfer_id, "hash_mismatch", f"{inc.offer.name!r} arrived corrupted (sha256 mismatch); partial copy discarded, send again")
        self.link._send(FileDone(transfer_id=end.transfer_id, sha256=inc.offer.sha256))
        self.received.put_nowait(ReceivedFile(inc.target, inc.offer.name, inc.offer.sha256, inc.offer.size, resumed_from=inc.resumed_from, via=inc.via))
        log.info("received %s (%d bytes via %s, sha256 %s verified)", inc.offer.name, inc.offer.size, inc.via, inc.offer.sha256[:12])

    async def shutdown(self) -> None:
        """The link is gone: record every partial file's durable offset so a new link resumes."""
        incoming, self._incoming = list(self._incoming.values()), {}
        for inc in incoming:
            await self._halt(inc)
            await asyncio.to_thread(self._close_incoming, inc, True)
            log.info("receive %s interrupted at %d of %d bytes; kept for resume", inc.offer.name, inc.offset, inc.offer.size)
