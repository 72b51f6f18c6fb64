"""The receiving end of the direct TLS stream (:mod:`.direct`): offer it, take one stream, write it.

The stream writes into the same ``.part`` through the same hashing writer as the data
channel (:class:`.staging.Staged`), so resume, verification and the cache are the same
whatever path the bytes took. A stream that breaks is answered ``path_failed`` with the
offset reached; the sender continues there on the data channel.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Awaitable, Callable

from ..protocol.transfer import DirectOffer
from ..util.tasks import TaskSet
from . import bulk_io, direct
from .errors import TransferError
from .fastpath import VIA_DIRECT
from .ports import TransferPort
from .staging import Staged
from .transfer_core import Incoming, ReceiverCore, io_failure

log = logging.getLogger(__name__)

DIRECT_DURABLE_EVERY = 64 * 1024 * 1024
DIRECT_FAIL_WAIT = 30.0


@dataclass
class RxHandle:
    """The driver's I/O state of one incoming transfer (``Incoming.handle``)."""

    staged: Staged
    listener: direct.DirectListener | None = None
    stream: direct.DirectStream | None = None
    pump: asyncio.Future | None = None


def handle(inc: Incoming) -> RxHandle:
    return inc.handle


def receive_stream(inc: Incoming, stream: direct.DirectStream, length: int) -> None:
    """Blocking, on the stream's thread: the receive pipeline, plus a background fsync every ``DIRECT_DURABLE_EVERY``."""
    staged = handle(inc).staged
    syncer = ThreadPoolExecutor(1, thread_name_prefix="sleap-rtc-direct-fsync")
    syncing: list[Future] = []

    def durable(offset: int) -> None:
        staged.record(offset)
        inc.durable = offset

    def write(view: memoryview) -> None:
        try:
            staged.io.write(staged.fh, view)
        except OSError as exc:
            raise bulk_io.SinkFailed(exc) from None
        inc.offset += len(view)
        if inc.offset - inc.durable >= DIRECT_DURABLE_EVERY and (not syncing or syncing[-1].done()):
            staged.fh.flush()
            syncing.append(syncer.submit(durable, inc.offset))

    try:
        bulk_io.pipeline(stream.recv_exactly, length, write, staged.hasher.update)
    finally:
        syncer.shutdown()
    for fut in syncing:
        error = fut.exception()
        if isinstance(error, OSError):
            raise bulk_io.SinkFailed(error)


class DirectReceiver:
    """Direct streams into one link's incoming transfers.

    ``abort(tid, error)`` refuses a transfer (the partial copy stays); ``path_failed(tid,
    path, reason, offset)`` tells the sender to go on over the data channel."""

    def __init__(
        self,
        port: TransferPort,
        core: ReceiverCore,
        abort: Callable[[str, TransferError], Awaitable[None]],
        path_failed: Callable[[str, str, str, int], None],
    ) -> None:
        self.port = port
        self.core = core
        self._abort = abort
        self._path_failed = path_failed
        self._identity: direct.TlsIdentity | None = None
        self._identity_lock = asyncio.Lock()
        self._warming = TaskSet(log, "direct path identity")

    def warm(self, wanted: bool) -> None:
        """Start making the TLS identity in the background (files are accepted now), so the first
        offer does not wait ~10 ms for a key and a certificate. A no-op outside an event loop."""
        if not wanted or self._identity is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._warming.spawn(self.prepare(), name="sleap-rtc-direct-identity")

    async def prepare(self, wanted: bool = True) -> bool:
        """Make the link's TLS identity (once; run beside staging, so it costs an offer no time).

        True when a direct stream can be offered: ``wanted`` and the ICE pair is host-to-host."""
        if not wanted or direct.direct_host(self.port.ice_pair()) is None:
            return False
        try:
            async with self._identity_lock:
                if self._identity is None:
                    self._identity = await asyncio.to_thread(direct.TlsIdentity.generate)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("cannot make a TLS identity for the direct path (%s); data channel only", exc)
            return False
        return True

    async def offer(self, inc: Incoming) -> None:
        """Listen for one stream of ``inc``'s remaining bytes and send ``direct_offer`` (when the ICE pair is host-to-host)."""
        tid = inc.offer.transfer_id
        host = direct.direct_host(self.port.ice_pair())
        if host is None:
            log.info("receive %s: ICE pair is not host-to-host; no direct path", inc.offer.name)
            return
        try:
            if not await self.prepare():
                return
            assert self._identity is not None
            listener = direct.DirectListener(tid, self._identity, lambda stream, o, n: self._on_stream(tid, stream, o, n))
            await listener.start(host)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("receive %s: cannot open a direct listener on %s (%s); data channel only", inc.offer.name, host, exc)
            return
        handle(inc).listener = listener
        self.port.send(DirectOffer(transfer_id=tid, host=host, port=listener.port, token=listener.token, cert_sha256=self._identity.fingerprint))

    @staticmethod
    def stop_listening(inc: Incoming) -> None:
        """No more direct streams for ``inc``: close its listener and break off a stream still running."""
        rx = handle(inc)
        if rx.listener is not None:
            rx.listener.close()
            rx.listener = None
        if rx.stream is not None:
            rx.stream.abort()

    async def halt(self, inc: Incoming) -> None:
        """No more bytes for ``inc``: stop listening, break off a running direct stream and let
        its pipeline drain, so the file is closed and its resume point recorded after the last write."""
        self.stop_listening(inc)
        pump = handle(inc).pump
        if pump is not None and not pump.done():
            await asyncio.wait({pump}, timeout=DIRECT_FAIL_WAIT)

    async def _on_stream(self, tid: str, stream: direct.DirectStream, offset: int, length: int) -> None:
        inc = self.core.incoming.get(tid)
        if inc is None or not self.core.stream_fits(inc, offset, length):
            stream.close()
            if inc is not None and not inc.direct_active:
                self._path_failed(tid, VIA_DIRECT, f"stream header at {offset}+{length} does not match {inc.offset} of {inc.offer.size}", inc.offset)
            return
        rx = handle(inc)
        inc.direct_active, inc.via, rx.stream = True, VIA_DIRECT, stream
        name = inc.offer.name
        started = time.monotonic()
        pump = rx.pump = direct.in_thread(receive_stream, inc, stream, length, name="sleap-rtc-direct-recv")
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
            await self._abort(tid, io_failure(exc.error, "receiver write failed", name=name, durable=inc.durable))
        except (OSError, ValueError) as exc:  # ssl.SSLError, a timeout, a reset; ValueError: link shut down mid-write
            inc.direct_active = False
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("receive %s: direct stream failed at %d of %d bytes (%s); asking for the rest on the data channel", name, inc.offset, inc.offer.size, why)
            if self.core.incoming.get(tid) is inc:
                self._path_failed(tid, VIA_DIRECT, why, inc.offset)
        finally:
            rx.stream = None
            if pump.done():
                stream.close()
            else:
                pump.add_done_callback(lambda _: stream.close())
