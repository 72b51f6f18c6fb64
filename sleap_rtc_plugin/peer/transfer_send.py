"""The sending side of file transfer: one asyncio driver per path, over :class:`.transfer_core.SenderCore`.

Hash the file (SHA-256, in a thread, memoised), ``file_offer`` it, and move the bytes
from the offset the receiver answers with, by the fastest path both sides allow:
shared storage (a path moves), the direct TLS stream, else chunks on the data channel.
Each faster path falls back to the next, resuming at the receiver's offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..protocol.transfer import DirectOffer, FileAccept, FileCancel, FileDone, FileViaPath, PathFailed
from ..util.hashing import MEMO, stat_and_hash, version_id
from ..util.tasks import TaskSet
from . import bulk_io, direct, shared
from .errors import LinkClosedError, TransferError
from .fastpath import DIRECT, HASH_AT_END, SHARED, VIA_CACHE, VIA_DATACHANNEL, VIA_DIRECT, VIA_SHARED
from .file_names import sanitize_name
from .ports import TransferPort
from .staging import DISK, DiskIO, open_at
from .transfer_core import CHUNK_SIZE, HEADER, SenderCore

log = logging.getLogger(__name__)

DIRECT_FAIL_WAIT = 30.0
#: File bytes read per thread hop on the data channel (then cut into chunks on the loop).
READ_BLOCK = 1024 * 1024

TransferProgress = Callable[[int, int], Any]


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


class Outgoing:
    """The asyncio face of one :class:`SenderCore`: replies to await, acks to wake on."""

    def __init__(self, core: SenderCore) -> None:
        self.core = core
        self.replies: asyncio.Queue = asyncio.Queue()
        self.ack_event = asyncio.Event()

    def fail(self, exc: BaseException) -> None:
        self.core.fail(exc)
        self.replies.put_nowait(exc)
        self.ack_event.set()

    def deliver(self, msg: Any) -> None:
        """A receiver message for this transfer (from the link's pump)."""
        reply = self.core.receive(msg)
        if reply is not None:
            self.replies.put_nowait(reply)
        if reply is None or isinstance(reply, BaseException):
            self.ack_event.set()

    def on_ack(self, offset: int) -> None:
        self.core.ack(offset)
        self.ack_event.set()

    async def window(self, offset: int) -> None:
        while not self.core.window_open(offset):
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

    async def next(self) -> Any:
        item = await self.replies.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def reply(self, want: tuple[type, ...]) -> Any:
        """The next reply of a wanted type (``direct_offer`` is remembered by the core on the way)."""
        while True:
            msg = await self.next()
            if isinstance(msg, want) and not isinstance(msg, DirectOffer):
                return msg

    async def reply_with_progress(self, want: tuple[type, ...], size: int, progress: TransferProgress | None) -> Any:
        """:meth:`reply`, reporting the receiver's ``file_ack`` offsets meanwhile (a copy made on its side)."""
        reply = asyncio.ensure_future(self.reply(want))
        try:
            while not reply.done():
                await self.ack_or(reply)
                if progress and self.core.acked and not reply.done():
                    progress(min(self.core.acked, size), size)
        finally:
            reply.cancel()
        return reply.result()


def _pump_and_close(stream: direct.DirectStream, fh: BinaryIO, pos: int, size: int, read, on_block) -> int:
    """Blocking, on the send thread, which owns the stream and the file handle from here on."""
    try:
        return bulk_io.send_region(stream, fh, pos, size, read, on_block, DIRECT_FAIL_WAIT)
    finally:
        stream.close()
        fh.close()


class Sender:
    """Outgoing transfers of one link.

    ``direct_redirect`` is a test hook: ``(host, port) -> (host, port)`` applied to a
    received ``direct_offer`` (to point the sender at a blocked port or a tampering relay).
    ``io``: the file reads (:class:`.staging.DiskIO`).
    """

    def __init__(self, port: TransferPort, io: DiskIO = DISK) -> None:
        self.port = port
        self.io = io
        self.outgoing: dict[str, Outgoing] = {}
        self._hash_passes = TaskSet(log, "hash pass")
        self.direct_redirect: Callable[[str, int], tuple[str, int]] | None = None

    def _both(self, feature: str) -> bool:
        return feature in self.port.fastpaths.features() and feature in self.port.remote_features

    def deliver(self, msg: Any) -> None:
        out = self.outgoing.get(msg.transfer_id)
        if out is not None:
            out.deliver(msg)

    def fail_all(self, exc: BaseException) -> None:
        for out in self.outgoing.values():
            out.fail(exc)

    def _hash_while_sending(self) -> bool:
        """Whether to offer under a resume key and hash while the bytes move, not in a pass before.

        Only toward a direct stream (host-to-host pair, both sides announcing ``+hashend``): at
        LAN speed the SHA-256 pass costs a fifth of the transfer's time. The pass still runs,
        on its own thread and its own reads (so a bad read on either side still shows as a
        mismatch), and its digest goes in ``file_end``. Without the digest up front the
        receiver's cache cannot answer this first offer; the pass memoises the digest, so
        later offers of the file name it. Not with shared storage, which checks the copy
        against the digest."""
        return (
            self.port.fastpaths.direct
            and self._both(DIRECT)
            and self._both(HASH_AT_END)
            and not self._both(SHARED)
            and direct.direct_host(self.port.ice_pair()) is not None
        )

    async def send_file(self, path: Path, *, name: str | None, progress: TransferProgress | None) -> SentFile:
        name = sanitize_name(name if name is not None else path.name)
        size, sha, key = await asyncio.to_thread(MEMO.lookup, path)
        hashing: asyncio.Future | None = None
        resume_key = ""
        if self._hash_while_sending():
            resume_key = version_id(key)
            if sha is None:
                hashing = self._hash_passes.spawn(asyncio.to_thread(stat_and_hash, path))  # outlives a failure: the memo gets it
        elif sha is None:
            size, sha = await asyncio.to_thread(stat_and_hash, path)
        tid = uuid.uuid4().hex
        out = self.outgoing[tid] = Outgoing(SenderCore(tid, name, size, sha or "", resume_key))
        result = SentFile(sha256=sha or "", size=size, name=name)
        try:
            self.port.send(out.core.offer())
            started = time.monotonic()
            reply = await out.reply((FileAccept,))
            if reply.cached:
                result.cached, result.via = True, VIA_CACHE
                log.info("send %s: receiver already has %s (cache hit)", name, result.sha256[:12])
                if progress:
                    progress(size, size)
                return result
            offset = result.resumed_from = out.core.resume_offset(reply)
            if offset:
                log.info("send %s: resuming at %d of %d bytes", name, offset, size)
            if self._both(SHARED) and await self._send_shared(out, path, result, progress):
                result.seconds = time.monotonic() - started
                if progress:
                    progress(size, size)
                log.info("sent %s", result.summary())
                return result
            if out.core.direct is not None and self.port.fastpaths.direct:
                offset = await self._send_direct(out, path, offset, progress, result)
            if offset < size or result.via != VIA_DIRECT:
                if result.via == VIA_DIRECT:
                    result.via = f"{VIA_DIRECT}+{VIA_DATACHANNEL}"
                await self._send_chunks(out, path, offset, progress, result)
            if hashing is not None:
                result.sha256 = await self._streamed_digest(out, path, key, hashing)
            self.port.send(out.core.end(result.sha256))
            await out.reply((FileDone,))
            result.seconds = time.monotonic() - started
            log.info("sent %s, sha256 %s verified by the receiver", result.summary(), result.sha256[:12])
            return result
        except LinkClosedError as exc:
            raise LinkClosedError(f"{exc} during transfer of {name}; reconnect and send again to resume") from None
        finally:
            self.outgoing.pop(tid, None)

    async def _streamed_digest(self, out: Outgoing, path: Path, key: tuple, hashing: asyncio.Future) -> str:
        """The concurrent pass's digest, for ``file_end``; refuses a file that changed while it was sent."""
        size, sha = await hashing
        try:
            same = await asyncio.to_thread(MEMO.key_of, path) == key
        except OSError:
            same = False
        if not same or size != out.core.size:
            self.port.send(FileCancel(transfer_id=out.core.transfer_id))
            raise TransferError("io_error", f"{path} changed while it was being sent; send it again once it is written")
        out.core.sha256 = sha
        return sha

    async def _send_chunks(self, out: Outgoing, path: Path, offset: int, progress: TransferProgress | None, result: SentFile) -> None:
        core, size = out.core, out.core.size
        fh = await asyncio.to_thread(open_at, path, offset)
        try:
            chunk_size = self.port.chunk_payload(HEADER.size, CHUNK_SIZE)
            read_size = max(1, READ_BLOCK // chunk_size) * chunk_size
            block = memoryview(b"")
            out.on_ack(offset)
            while offset < size:
                await out.window(offset)
                if core.error is not None:
                    raise core.error
                if not block:  # one thread hop per READ_BLOCK, not per chunk
                    block = memoryview(await asyncio.to_thread(self.io.read, fh, min(read_size, size - offset)))
                    if not block:
                        raise TransferError("io_error", f"{path} shrank while it was being sent")
                data, block = block[:chunk_size], block[chunk_size:]
                await self.port.send_bytes(core.chunk(offset, data))
                offset += len(data)
                result.bytes_sent += len(data)
                if progress:
                    progress(offset, size)
        finally:
            await asyncio.to_thread(fh.close)

    async def _send_direct(self, out: Outgoing, path: Path, offset: int, progress: TransferProgress | None, result: SentFile) -> int:
        """Stream ``[offset, size)`` over the direct path; returns where the data channel must continue."""
        offer = out.core.direct
        assert offer is not None
        size = out.core.size
        host, port = offer.host, offer.port
        if self.direct_redirect is not None:
            host, port = self.direct_redirect(host, port)
        try:
            stream = await direct.open_stream(host, port, offer.cert_sha256, offer.token, out.core.transfer_id, offset, size - offset, self.port.fastpaths.direct_timeout)
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
            fh = await asyncio.to_thread(open_at, path, offset)
        except OSError:
            stream.close()
            raise
        pump = direct.in_thread(_pump_and_close, stream, fh, offset, size, self.io.read, on_block, name="sleap-rtc-direct-send")
        try:
            acked = await self._until_failed(out, pump, stream)
            if acked != size:
                raise direct.DirectPathError("receiver acknowledged a different length")
            return size
        except EOFError as exc:
            raise TransferError("io_error", f"{path}: {exc}") from None
        except (direct.DirectPathError, OSError) as exc:  # ssl.SSLError and socket.timeout are OSErrors
            if out.core.error is not None:
                raise out.core.error from exc
            why = str(exc) or type(exc).__name__
            log.warning("send %s: direct stream broke at %d of %d bytes (%s); waiting for the receiver's resume point", result.name, sent[0], size, why)
            try:
                failed = await asyncio.wait_for(out.reply((PathFailed,)), DIRECT_FAIL_WAIT)
            except asyncio.TimeoutError:
                raise TransferError("direct_failed", f"direct stream broke ({why}) and the receiver gave no resume point; send again to resume") from None
            result.fallback = f"direct stream broke ({failed.reason}); continued on the data channel at {failed.offset / 1e6:.1f} MB"
            return failed.offset
        finally:
            result.bytes_sent += sent[0] - offset

    @staticmethod
    async def _until_failed(out: Outgoing, pump: asyncio.Future, stream: direct.DirectStream) -> Any:
        """Await the send thread; a receiver refusal or our cancellation aborts the stream under it."""
        try:
            while not pump.done():
                await out.ack_or(pump)
                if out.core.error is not None:
                    stream.abort()
                    await asyncio.gather(pump, return_exceptions=True)
                    raise out.core.error
        except asyncio.CancelledError:
            stream.abort()
            raise
        return pump.result()

    async def _send_shared(self, out: Outgoing, path: Path, result: SentFile, progress: TransferProgress | None = None) -> bool:
        """Offer the file as a path on shared storage; False (fall back to bytes) unless the receiver took it."""
        mapped = shared.map_path(self.port.fastpaths, self.port.role, path)
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
            self.port.send(FileViaPath(transfer_id=out.core.transfer_id, path=remote_path, probe_path=remote_probe, probe_sha256=probe_sha))
            reply = await out.reply_with_progress((FileDone, PathFailed), result.size, progress)
        finally:
            await asyncio.to_thread(probe.unlink, True)
        if isinstance(reply, PathFailed):
            result.fallback = f"shared storage not usable: {reply.reason}"
            log.warning("send %s: %s; sending bytes", result.name, result.fallback)
            return False
        result.via = VIA_SHARED
        return True
