"""Streamed, hashed, resumable file transfer over a :class:`PeerLink`.

Sender: hash the file (SHA-256, in a thread), ``file_offer`` it, and stream binary
chunks from the offset the receiver answers with. Each chunk is one data-channel
message: a 28-byte header (magic, transfer id, offset) and up to 64 KiB of data.

Receiver (:class:`FileReceiver`): writes into ``<dest>/.sleap-rtc-partial/<sha>.part``
and records the durable offset (after flush + fsync) in ``<sha>.json`` every
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
side plus the transport's send buffer.
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
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

from ..protocol.transfer import FileAccept, FileAck, FileCancel, FileDone, FileEnd, FileOffer, FileReject
from .errors import LinkClosedError, TransferError

if TYPE_CHECKING:
    from .link import PeerLink

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
ACK_EVERY = 4 * 1024 * 1024
DEFAULT_MAX_SIZE = 20 * 1024**3
HASH_BLOCK = 1024 * 1024
FREE_SPACE_MARGIN = 16 * 1024 * 1024
MAGIC = b"SRF1"
HEADER = struct.Struct("!4s16sQ")
PARTIAL_DIR = ".sleap-rtc-partial"
CACHE_DIR = ".sleap-rtc-cache"

Progress = Callable[[int, int], Any]


@dataclass
class SentFile:
    sha256: str
    size: int
    name: str
    resumed_from: int = 0
    bytes_sent: int = 0
    cached: bool = False


@dataclass
class ReceivedFile:
    path: Path
    name: str
    sha256: str
    size: int
    cached: bool = False
    resumed_from: int = 0


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


def sha256_file(path: Path, limit: int | None = None) -> str:
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
    return h.hexdigest()


def _write_chunk(fh: BinaryIO, data: bytes) -> None:
    """The single write seam of the receiver (tests inject ENOSPC here)."""
    fh.write(data)


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


class FileReceiver:
    """Where incoming files go, and the limits that apply to them (one per link or shared)."""

    def __init__(self, dest_dir: str | Path, *, cache_dir: str | Path | None = None, max_size: int = DEFAULT_MAX_SIZE):
        self.dest_dir = Path(dest_dir)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.dest_dir / CACHE_DIR
        self.partial_dir = self.dest_dir / PARTIAL_DIR
        self.max_size = max_size
        for d in (self.dest_dir, self.cache_dir, self.partial_dir):
            d.mkdir(parents=True, exist_ok=True)

    def cached_path(self, sha256: str) -> Path | None:
        """The verified cache entry for ``sha256``, if this receiver holds one."""
        path = self.cache_dir / sha256
        return path if re.fullmatch(r"[0-9a-f]{64}", sha256) and path.is_file() else None

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
        _write_state(state, {"sha256": offer.sha256, "size": offer.size, "name": offer.name, "offset": offset})
        return _Incoming(offer, target, part, state, fh, offset, offset, offset)

    def _record(self, inc: _Incoming) -> None:
        _sync(inc.fh)
        _write_state(inc.state, {"sha256": inc.offer.sha256, "size": inc.offer.size, "name": inc.offer.name, "offset": inc.offset})

    def _finish(self, inc: _Incoming) -> bool:
        inc.fh.close()
        actual = sha256_file(inc.part)
        if actual != inc.offer.sha256:
            inc.part.unlink(missing_ok=True)
            inc.state.unlink(missing_ok=True)
            return False
        cached = self.cache_dir / inc.offer.sha256
        os.chmod(inc.part, 0o444)
        os.replace(inc.part, cached)
        inc.state.unlink(missing_ok=True)
        _materialize(cached, inc.target)
        return True


# -- per-link transfer engine ---------------------------------------------------------


class _Outgoing:
    def __init__(self) -> None:
        self.replies: asyncio.Queue = asyncio.Queue()
        self.error: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.replies.put_nowait(exc)

    async def next(self):
        item = await self.replies.get()
        if isinstance(item, BaseException):
            raise item
        return item


class Transfers:
    """Both directions of file transfer for one link; driven by the link's pump."""

    def __init__(self, link: "PeerLink"):
        self.link = link
        self.receiver: FileReceiver | None = None
        self.received: asyncio.Queue[ReceivedFile] = asyncio.Queue()
        self._outgoing: dict[str, _Outgoing] = {}
        self._incoming: dict[str, _Incoming] = {}

    # sender side
    async def send_file(self, path: Path, *, name: str | None, progress: Progress | None) -> SentFile:
        name = sanitize_name(name if name is not None else path.name)
        size = (await asyncio.to_thread(path.stat)).st_size
        sha = await asyncio.to_thread(sha256_file, path)
        tid = uuid.uuid4().hex
        out = _Outgoing()
        self._outgoing[tid] = out
        result = SentFile(sha256=sha, size=size, name=name)
        fh: BinaryIO | None = None
        try:
            self.link._send(FileOffer(transfer_id=tid, name=name, size=size, sha256=sha))
            reply = await self._reply(out, (FileAccept,))
            if reply.cached:
                result.cached = True
                log.info("send %s: receiver already has %s (cache hit)", name, sha[:12])
                if progress:
                    progress(size, size)
                return result
            if not 0 <= reply.offset <= size:
                raise TransferError("bad_frame", f"receiver asked to resume at {reply.offset}, beyond the file size {size}")
            offset = result.resumed_from = reply.offset
            if offset:
                log.info("send %s: resuming at %d of %d bytes", name, offset, size)
            fh = await asyncio.to_thread(_open_at, path, offset)
            tid_bytes = bytes.fromhex(tid)
            transport = self.link.transport
            while offset < size:
                if out.error is not None:
                    raise out.error
                data = await asyncio.to_thread(_read_chunk, fh, min(CHUNK_SIZE, size - offset))
                if not data:
                    raise TransferError("io_error", f"{path} shrank while it was being sent")
                await transport.send_bytes(HEADER.pack(MAGIC, tid_bytes, offset) + data)
                offset += len(data)
                result.bytes_sent += len(data)
                if progress:
                    progress(offset, size)
            self.link._send(FileEnd(transfer_id=tid, size=size))
            await self._reply(out, (FileDone,))
            log.info("sent %s (%d bytes, sha256 %s) verified by the receiver", name, size, sha[:12])
            return result
        except LinkClosedError as exc:
            raise LinkClosedError(f"{exc} during transfer of {name}; reconnect and send again to resume") from None
        finally:
            self._outgoing.pop(tid, None)
            if fh is not None:
                await asyncio.to_thread(fh.close)

    async def _reply(self, out: _Outgoing, want: tuple[type, ...]):
        while True:
            msg = await out.next()
            if isinstance(msg, FileReject):
                raise TransferError(msg.code, f"receiver refused the file: {msg.message}")
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
        if isinstance(msg, (FileAccept, FileAck, FileDone, FileReject)):
            out = self._outgoing.get(msg.transfer_id)
            if out is None:
                return
            if isinstance(msg, FileReject):
                out.fail(TransferError(msg.code, f"receiver refused the file: {msg.message}"))
            elif not isinstance(msg, FileAck):
                out.replies.put_nowait(msg)
        elif isinstance(msg, FileOffer):
            await self._on_offer(msg)
        elif isinstance(msg, FileEnd):
            await self._on_end(msg)
        elif isinstance(msg, FileCancel):
            inc = self._incoming.pop(msg.transfer_id, None)
            if inc is not None:
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
        cached = rx.cached_path(offer.sha256)
        if cached is not None and cached.stat().st_size == offer.size:
            try:
                await asyncio.to_thread(_materialize, cached, target)
            except OSError as exc:
                return self._reject(tid, "io_error", f"could not place cached copy: {exc}")
            self.link._send(FileAccept(transfer_id=tid, cached=True))
            self.received.put_nowait(ReceivedFile(target, offer.name, offer.sha256, offer.size, cached=True))
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
        self.link._send(FileAccept(transfer_id=tid, offset=inc.offset))

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
        if offset != inc.offset or offset + len(data) > inc.offer.size:
            await self._abort(tid, "bad_frame", f"chunk at offset {offset} (+{len(data)}) does not follow {inc.offset} of {inc.offer.size}")
            return
        try:
            await asyncio.to_thread(_write_chunk, inc.fh, data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                await self._abort(tid, "disk_full", f"receiver disk is full after {inc.durable} bytes of {inc.offer.name!r}; partial copy kept for resume")
            else:
                await self._abort(tid, "io_error", f"receiver write failed: {exc.strerror or exc}")
            return
        inc.offset += len(data)
        if inc.offset - inc.durable >= ACK_EVERY:
            await asyncio.to_thread(self.receiver._record, inc)
            inc.durable = inc.offset
            self.link._send(FileAck(transfer_id=tid, offset=inc.offset))

    async def _abort(self, tid: str, code: str, message: str) -> None:
        """Stop receiving ``tid``; keep the .part at its last durable offset for a later resume."""
        inc = self._incoming.pop(tid, None)
        if inc is not None:
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

    async def _on_end(self, end: FileEnd) -> None:
        inc = self._incoming.get(end.transfer_id)
        if inc is None:
            return
        if inc.offset != inc.offer.size or end.size != inc.offer.size:
            return await self._abort(end.transfer_id, "bad_frame", f"file_end after {inc.offset} of {inc.offer.size} bytes")
        del self._incoming[end.transfer_id]
        try:
            ok = await asyncio.to_thread(self.receiver._finish, inc)
        except OSError as exc:
            code = "disk_full" if exc.errno == errno.ENOSPC else "io_error"
            return self._reject(end.transfer_id, code, f"could not store {inc.offer.name!r}: {exc.strerror or exc}")
        if not ok:
            return self._reject(end.transfer_id, "hash_mismatch", f"{inc.offer.name!r} arrived corrupted (sha256 mismatch); partial copy discarded, send again")
        self.link._send(FileDone(transfer_id=end.transfer_id, sha256=inc.offer.sha256))
        self.received.put_nowait(ReceivedFile(inc.target, inc.offer.name, inc.offer.sha256, inc.offer.size, resumed_from=inc.resumed_from))
        log.info("received %s (%d bytes, sha256 %s verified)", inc.offer.name, inc.offer.size, inc.offer.sha256[:12])

    async def shutdown(self) -> None:
        """The link is gone: record every partial file's durable offset so a new link resumes."""
        incoming, self._incoming = list(self._incoming.values()), {}
        for inc in incoming:
            await asyncio.to_thread(self._close_incoming, inc, True)
            log.info("receive %s interrupted at %d of %d bytes; kept for resume", inc.offer.name, inc.offset, inc.offer.size)
