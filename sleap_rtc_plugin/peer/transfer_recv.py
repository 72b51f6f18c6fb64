"""The receiving side of file transfer: the asyncio driver over :class:`.transfer_core.ReceiverCore`.

An offer is checked by the core (name, size, busy), then staged on disk
(:class:`.staging.FileReceiver`: resume point, free space) or answered from the cache
(``file_accept(cached=true)``: one round trip, no bytes). Chunks from the data channel
are checked by the core and written in a thread; every ``ACK_EVERY`` bytes the resume
point is recorded and acknowledged. Shared-storage and direct-stream offers land in
the same staged file. Disk errors become refusals through :func:`.transfer_core.io_failure`;
the ``.part`` and its sidecar are *kept* at the last durable offset so the transfer
resumes once space is freed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol.transfer import FileAccept, FileAck, FileCancel, FileDone, FileEnd, FileOffer, FileReject, FileViaPath, PathFailed
from . import shared
from .direct_recv import DirectReceiver, RxHandle, handle
from .errors import LinkClosedError, TransferError
from .fastpath import DIRECT, SHARED, VIA_CACHE, VIA_DATACHANNEL, VIA_SHARED
from .file_names import resolve_inside
from .ports import TransferPort
from .staging import FileReceiver
from .transfer_core import Abort, Incoming, ReceiverCore, ReplyError, WriteChunk, io_failure

log = logging.getLogger(__name__)


@dataclass
class ReceivedFile:
    path: Path
    name: str
    sha256: str
    size: int
    cached: bool = False
    resumed_from: int = 0
    via: str = VIA_DATACHANNEL


class Receiver:
    """Incoming transfers of one link; ``receiver`` (None until files are accepted) says where they go."""

    def __init__(self, port: TransferPort) -> None:
        self.port = port
        self._receiver: FileReceiver | None = None
        self.received: asyncio.Queue[ReceivedFile] = asyncio.Queue()
        self.core = ReceiverCore()
        self.direct = DirectReceiver(port, self.core, self._abort, self._path_failed)

    @property
    def receiver(self) -> FileReceiver | None:
        return self._receiver

    @receiver.setter
    def receiver(self, value: FileReceiver | None) -> None:
        """Accept files into ``value``; from now on an offer may come, so make the direct path's TLS identity."""
        self._receiver = value
        if value is not None:
            self.direct.warm(self._both(DIRECT))

    def _both(self, feature: str) -> bool:
        return feature in self.port.fastpaths.features() and feature in self.port.remote_features

    def _send_quietly(self, msg: Any) -> None:
        try:
            self.port.send(msg)
        except LinkClosedError:
            pass

    def _reject(self, tid: str, code: str, message: str) -> None:
        log.warning("file transfer %s refused: %s: %s", tid[:8], code, message)
        self._send_quietly(FileReject(transfer_id=tid, code=code, message=message))

    def _path_failed(self, tid: str, path: str, reason: str, offset: int) -> None:
        self._send_quietly(PathFailed(transfer_id=tid, path=path, reason=reason[:500], offset=offset))

    def _ack(self, tid: str, offset: int) -> None:
        self._send_quietly(FileAck(transfer_id=tid, offset=offset))

    async def on_control(self, msg: Any) -> None:
        if isinstance(msg, FileOffer):
            await self._on_offer(msg)
        elif isinstance(msg, FileViaPath):
            await self._on_via_path(msg)
        elif isinstance(msg, FileEnd):
            await self._on_end(msg)
        elif isinstance(msg, FileCancel):
            inc = self.core.pop(msg.transfer_id)
            if inc is not None:
                await self._close(inc)

    async def _on_offer(self, offer: FileOffer) -> None:
        rx = self.receiver
        tid = offer.transfer_id
        try:
            self.core.check_offer(offer, accepting=rx is not None, max_size=rx.max_size if rx is not None else 0)
            assert rx is not None
            target = resolve_inside(rx.dest_dir, offer.name)
        except TransferError as exc:
            return self._reject(tid, exc.code, str(exc))
        try:
            hit = bool(offer.sha256) and await asyncio.to_thread(rx.place_cached, offer.sha256, offer.size, target)
        except OSError as exc:
            return self._reject(tid, "io_error", f"could not place cached copy: {exc}")
        if hit:
            self.port.send(FileAccept(transfer_id=tid, cached=True))
            self.received.put_nowait(ReceivedFile(target, offer.name, offer.sha256, offer.size, cached=True, via=VIA_CACHE))
            log.info("receive %s: cache hit %s", offer.name, offer.sha256[:12])
            return
        direct = self._both(DIRECT)
        staging, prepared = await asyncio.gather(asyncio.to_thread(rx.open, offer, target), self.direct.prepare(direct), return_exceptions=True)
        if isinstance(staging, TransferError):
            return self._reject(tid, staging.code, str(staging))
        if isinstance(staging, OSError):
            err = io_failure(staging, f"cannot stage {offer.name!r}", name=offer.name)
            return self._reject(tid, err.code, str(err))
        if isinstance(staging, BaseException):
            raise staging
        staged, offset = staging
        inc = self.core.start(offer, offset, RxHandle(staged))
        if offset:
            log.info("receive %s: resuming at %d of %d bytes", offer.name, offset, offer.size)
        if isinstance(prepared, BaseException):
            log.warning("receive %s: direct path not prepared (%s); data channel only", offer.name, prepared)
        elif offset < offer.size and direct:
            await self.direct.offer(inc)
        self.port.send(FileAccept(transfer_id=tid, offset=offset))

    # -- shared storage ------------------------------------------------------------
    async def _on_via_path(self, msg: FileViaPath) -> None:
        tid = msg.transfer_id
        inc = self.core.incoming.get(tid)
        if inc is None or self.receiver is None:
            return
        receiver = self.receiver
        options, role = self.port.fastpaths, self.port.role
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

            await asyncio.to_thread(receiver.adopt_shared, src, handle(inc).staged, copied)
        except (shared.SharedPathError, OSError) as exc:
            why = str(exc) if isinstance(exc, shared.SharedPathError) else f"copy failed: {exc.strerror or exc}"
            log.warning("receive %s: shared path refused: %s", inc.offer.name, why)
            return self._path_failed(tid, VIA_SHARED, why, inc.offset)
        self.core.pop(tid)
        self.direct.stop_listening(inc)
        seconds = time.monotonic() - started
        self.port.send(FileDone(transfer_id=tid, sha256=inc.offer.sha256))
        self.received.put_nowait(ReceivedFile(handle(inc).staged.target, inc.offer.name, inc.offer.sha256, inc.offer.size, via=VIA_SHARED))
        log.info("received %s (%d bytes) from shared storage %s in %.2f s, sha256 verified", inc.offer.name, inc.offer.size, msg.path, seconds)

    # -- data channel ----------------------------------------------------------------
    async def on_chunk(self, frame: bytes) -> None:
        step = self.core.chunk(frame)
        if isinstance(step, ReplyError):
            self.port.reply_error(step.code, step.message)
        elif isinstance(step, Abort):
            await self._abort(step.transfer_id, TransferError(step.code, step.message))
        elif isinstance(step, WriteChunk):
            await self._write(step.inc, step.data)

    async def _write(self, inc: Incoming, data: memoryview) -> None:
        staged = handle(inc).staged
        try:
            await asyncio.to_thread(staged.write, data)
        except OSError as exc:
            await self._abort(inc.offer.transfer_id, io_failure(exc, "receiver write failed", name=inc.offer.name, durable=inc.durable))
            return
        if self.core.written(inc, len(data)):
            offset = inc.offset
            await asyncio.to_thread(staged.flush_and_record, offset)
            self.port.send(self.core.recorded(inc, offset))

    async def _close(self, inc: Incoming, *, record: bool = False) -> None:
        """Stop ``inc`` for good on this link: no more direct stream, file closed (resume point recorded if asked)."""
        await self.direct.halt(inc)
        await asyncio.to_thread(handle(inc).staged.close, inc.offset if record else None)

    async def _abort(self, tid: str, error: TransferError) -> None:
        """Stop receiving ``tid``; keep the .part at its last durable offset for a later resume."""
        inc = self.core.pop(tid)
        if inc is not None:
            await self._close(inc)
        self._reject(tid, error.code, str(error))

    async def _on_end(self, end: FileEnd) -> None:
        step = self.core.end(end)
        if step is None:
            return
        if isinstance(step, Abort):
            return await self._abort(step.transfer_id, TransferError(step.code, step.message))
        inc, receiver = step, self.receiver
        assert receiver is not None
        self.direct.stop_listening(inc)
        staged = handle(inc).staged
        try:
            digest = await asyncio.to_thread(receiver.finish, staged, inc.sha256)
        except OSError as exc:
            err = io_failure(exc, f"could not store {inc.offer.name!r}", name=inc.offer.name)
            return self._reject(end.transfer_id, err.code, str(err))
        verdict = self.core.verdict(inc, digest)
        if isinstance(verdict, FileReject):
            return self._reject(verdict.transfer_id, verdict.code, verdict.message)
        self.port.send(verdict)
        self.received.put_nowait(ReceivedFile(staged.target, inc.offer.name, inc.sha256, inc.offer.size, resumed_from=inc.resumed_from, via=inc.via))
        log.info("received %s (%d bytes via %s, sha256 %s verified)", inc.offer.name, inc.offer.size, inc.via, inc.sha256[:12])

    async def shutdown(self) -> None:
        """The link is gone: record every partial file's durable offset so a new link resumes."""
        for inc in self.core.drain():
            await self._close(inc, record=True)
            log.info("receive %s interrupted at %d of %d bytes; kept for resume", inc.offer.name, inc.offset, inc.offer.size)
