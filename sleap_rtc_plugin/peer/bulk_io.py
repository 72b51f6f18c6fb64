"""Blocking byte pumps for bulk paths: send a file region on a direct stream; fill, write and hash in a pipeline.

Why threads: the receiving end of a multi-GB file does three expensive things per
block -- fill it (TLS decryption, or a read from shared storage), write it, SHA-256
it -- and each of them releases the GIL. :func:`pipeline` runs them on three threads
(this one fills, one writes, one hashes, each strictly in order) over a small ring of
reusable buffers, so the slowest stage, not their sum, sets the pace, and memory stays
at ``BUFFERS`` blocks.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Callable

from .direct import ACK, BLOCK, DirectStream

BUFFERS = 8


class SinkFailed(Exception):
    """The receiver's own write failed (disk full, IO error): distinct from the stream breaking."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def send_region(
    stream: DirectStream,
    fh: BinaryIO,
    pos: int,
    size: int,
    read: Callable[[BinaryIO, int], bytes],
    on_block: Callable[[int], Any],
    ack_timeout: float,
) -> int:
    """Blocking: send ``[pos, size)`` of ``fh``, then return the offset the receiver acknowledges.

    ``on_block(pos)`` runs after each block is handed to TLS. Raises ``OSError``/``SSLError``
    when the stream breaks and ``EOFError`` when the file is shorter than announced.
    """
    while pos < size:
        data = read(fh, min(BLOCK, size - pos))
        if not data:
            raise EOFError(f"file shrank to {pos} bytes while it was being sent")
        stream.sock.sendall(data)
        pos += len(data)
        on_block(pos)
    stream.sock.settimeout(ack_timeout)
    raw = bytearray(ACK.size)
    stream.recv_exactly(memoryview(raw))
    return ACK.unpack(raw)[0]


def pipeline(fill: Callable[[memoryview], None], length: int, write: Callable[[memoryview], None], digest: Callable[[memoryview], None]) -> None:
    """Blocking: ``fill`` blocks totalling ``length`` bytes, ``write`` and ``digest`` each in order.

    ``fill(view)`` fills the whole view or raises (e.g. :meth:`DirectStream.recv_exactly`).
    Whatever happens, every block filled whole is written and digested before this
    returns or raises, so the writer's offset and the running hash always describe the
    same prefix. Once ``write`` raises (:class:`SinkFailed` for a disk error, say), later
    blocks are not written and that error is the one raised.
    """
    writer = ThreadPoolExecutor(1, thread_name_prefix="sleap-rtc-direct-write")
    hasher = ThreadPoolExecutor(1, thread_name_prefix="sleap-rtc-direct-hash")
    buffers = [bytearray(BLOCK) for _ in range(BUFFERS)]
    inflight: deque[tuple[Future, Future]] = deque()
    failed: list[BaseException] = []

    def guarded_write(view: memoryview) -> None:
        if failed:
            return  # a block after a failed one would leave a hole
        try:
            write(view)
        except BaseException as exc:
            failed.append(exc)
            raise

    def settle(pair: tuple[Future, Future]) -> None:
        for fut in pair:
            fut.result()

    error: BaseException | None = None
    try:
        remaining, i = length, 0
        while remaining:
            if len(inflight) == BUFFERS:
                settle(inflight.popleft())
            view = memoryview(buffers[i % BUFFERS])[: min(BLOCK, remaining)]
            fill(view)
            remaining -= len(view)
            i += 1
            inflight.append((writer.submit(guarded_write, view), hasher.submit(digest, view)))
    except BaseException as exc:  # noqa: BLE001 -- re-raised below, after the drain
        error = exc
    while inflight:
        try:
            settle(inflight.popleft())
        except BaseException as exc:  # noqa: BLE001
            error = error or exc
    writer.shutdown()
    hasher.shutdown()
    if failed:
        raise failed[0]
    if error is not None:
        raise error
