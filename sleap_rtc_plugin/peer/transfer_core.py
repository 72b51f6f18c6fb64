"""The file-transfer protocol as a state machine: frames and messages in, decisions out. No I/O.

Like the sans-I/O core of ``websockets`` (``protocol.py``), nothing here touches a socket,
a file, a thread or an event loop: the drivers (:mod:`.transfer_send`,
:mod:`.transfer_recv`, :mod:`.direct_recv`) read and write, and ask this module what
the protocol says. That is what lets ``tests/test_transfer_core.py`` check offers, chunk
order, resume points and verdicts with plain bytes.

Wire format of a chunk: one binary data-channel message, a 28-byte header (``MAGIC``,
16-byte transfer id, offset) then up to :data:`CHUNK_SIZE` bytes of the file.

Receiver: :class:`ReceiverCore` holds each incoming transfer's :class:`Incoming` state
(offset written, offset durable, which path). :meth:`ReceiverCore.chunk` turns a frame
into :class:`WriteChunk` (write these bytes), :class:`Abort` (refuse this transfer, keep
the partial copy) or :class:`ReplyError` (the frame itself is garbage);
:meth:`ReceiverCore.written` says when a resume point is due (every :data:`ACK_EVERY`).

Sender: :class:`SenderCore` holds one outgoing transfer: what the receiver acknowledged,
whether it failed, a direct offer, and the window that keeps at most
:data:`SEND_WINDOW` bytes unacknowledged.

Resume sidecar: :class:`Sidecar` is the ``<sha>.json`` next to a ``.part``; it is encoded
and judged here (:func:`resume_point`) and written by exactly one function
(:meth:`.staging.Staged.record`). ``ENOSPC`` becomes ``disk_full`` in exactly one place:
:func:`io_failure`.
"""

from __future__ import annotations

import errno
import json
import struct
from dataclasses import dataclass
from typing import Any

from ..protocol.transfer import DirectOffer, FileAccept, FileAck, FileDone, FileEnd, FileOffer, FileReject
from .errors import TransferError
from .fastpath import VIA_DATACHANNEL, VIA_DIRECT
from .file_names import sanitize_name

CHUNK_SIZE = 64 * 1024
ACK_EVERY = 4 * 1024 * 1024
SEND_WINDOW = 16 * 1024 * 1024
DEFAULT_MAX_SIZE = 20 * 1024**3
MAGIC = b"SRF1"
HEADER = struct.Struct("!4s16sQ")


# -- chunk frames -------------------------------------------------------------------


def frame_chunk(tid_bytes: bytes, offset: int, data: bytes | memoryview) -> bytes:
    """One binary chunk message: header + data (``tid_bytes``: the transfer id's 16 raw bytes)."""
    return HEADER.pack(MAGIC, tid_bytes, offset) + data


# -- failures ---------------------------------------------------------------------------


def io_failure(exc: OSError, doing: str, *, name: str, durable: int | None = None) -> TransferError:
    """The one mapping from a receiver's disk error to a refusal: ``ENOSPC`` is ``disk_full``.

    ``durable`` (set while writing): the partial copy is kept at that offset for a resume,
    and the message says so. ``doing``: what failed, for any other error.
    """
    if exc.errno == errno.ENOSPC and durable is not None:
        return TransferError("disk_full", f"receiver disk is full after {durable} bytes of {name!r}; partial copy kept for resume")
    code = "disk_full" if exc.errno == errno.ENOSPC else "io_error"
    return TransferError(code, f"{doing}: {exc.strerror or exc}")


# -- resume sidecar ------------------------------------------------------------------


@dataclass(frozen=True)
class Sidecar:
    """What ``<partial>/<sha>.json`` records: which content, and how much of it is durable."""

    sha256: str
    size: int
    name: str
    offset: int
    resume_key: str = ""

    @classmethod
    def of(cls, offer: FileOffer, offset: int) -> "Sidecar":
        return cls(offer.sha256, offer.size, offer.name, offset, offer.resume_key)

    def encode(self) -> str:
        data: dict[str, Any] = {"sha256": self.sha256, "size": self.size, "name": self.name, "offset": self.offset}
        if self.resume_key:
            data["resume_key"] = self.resume_key
        return json.dumps(data)


def resume_point(sidecar_text: str | None, offer: FileOffer, part_size: int | None) -> int:
    """Where a new offer of ``offer``'s content resumes: the sidecar's offset when the sidecar is
    for this content and the ``.part`` (``part_size`` bytes; None: missing) holds that much, else 0."""
    if sidecar_text is None or part_size is None:
        return 0
    try:
        data = json.loads(sidecar_text)
        offset = int(data["offset"])
        same = data.get("resume_key") == offer.resume_key if offer.resume_key else data.get("sha256") == offer.sha256
        if not same or int(data["size"]) != offer.size:
            return 0
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0
    return offset if 0 <= offset <= offer.size and part_size >= offset else 0


# -- receiver -------------------------------------------------------------------------


@dataclass
class Incoming:
    """Where one incoming transfer stands. ``handle``: the driver's own I/O state for it (opaque here)."""

    offer: FileOffer
    offset: int
    durable: int
    resumed_from: int
    direct_active: bool = False
    via: str = VIA_DATACHANNEL
    handle: Any = None
    sha256: str = ""  # the digest to verify against: the offer's, else the one ``file_end`` names


@dataclass(frozen=True)
class WriteChunk:
    """Write ``data`` at ``inc.offset``, then report it with :meth:`ReceiverCore.written`."""

    inc: Incoming
    data: memoryview


@dataclass(frozen=True)
class Abort:
    """Stop receiving ``transfer_id`` and refuse it with ``code``; its partial copy stays for a resume."""

    transfer_id: str
    code: str
    message: str


@dataclass(frozen=True)
class ReplyError:
    """The frame is not a chunk at all: answer ``peer_error`` on the link."""

    code: str
    message: str


class ReceiverCore:
    """Incoming transfers of one link and the rules their frames must follow."""

    def __init__(self) -> None:
        self.incoming: dict[str, Incoming] = {}

    def check_offer(self, offer: FileOffer, *, accepting: bool, max_size: int) -> None:
        """Raise :class:`TransferError` unless ``offer`` may be staged (name, size, not already arriving)."""
        if not accepting:
            raise TransferError("not_accepting", "this peer is not accepting files on this link")
        sanitize_name(offer.name)
        if offer.size > max_size:
            raise TransferError("too_large", f"{offer.name!r} is {offer.size} bytes; this receiver accepts at most {max_size}")
        if offer.sha256 and any(i.offer.sha256 == offer.sha256 for i in self.incoming.values()):
            raise TransferError("busy", "the same content is already being received on this link")

    def start(self, offer: FileOffer, offset: int, handle: Any = None) -> Incoming:
        """Track ``offer`` from ``offset`` (its resume point); the caller answers ``file_accept(offset)``."""
        inc = self.incoming[offer.transfer_id] = Incoming(offer, offset, offset, offset, handle=handle, sha256=offer.sha256)
        return inc

    def chunk(self, frame: bytes) -> WriteChunk | Abort | ReplyError | None:
        """What to do with one binary frame; None: it belongs to a transfer already refused or cancelled."""
        if len(frame) < HEADER.size:
            return ReplyError("bad_frame", "binary frame shorter than its header")
        magic, tid_bytes, offset = HEADER.unpack_from(frame)
        if magic != MAGIC:
            return ReplyError("bad_frame", "binary frame with an unknown header")
        tid = tid_bytes.hex()
        inc = self.incoming.get(tid)
        if inc is None:
            return None
        data = memoryview(frame)[HEADER.size :]
        if inc.direct_active or offset != inc.offset or offset + len(data) > inc.offer.size:
            return Abort(tid, "bad_frame", f"chunk at offset {offset} (+{len(data)}) does not follow {inc.offset} of {inc.offer.size}")
        return WriteChunk(inc, data)

    @staticmethod
    def written(inc: Incoming, count: int) -> bool:
        """``count`` more bytes are on disk (not yet durable); True when a resume point is due."""
        inc.offset += count
        if inc.via == VIA_DIRECT:
            inc.via = f"{VIA_DIRECT}+{VIA_DATACHANNEL}"
        return inc.offset - inc.durable >= ACK_EVERY

    @staticmethod
    def recorded(inc: Incoming, offset: int) -> FileAck:
        """``offset`` is durable: the ``file_ack`` that tells the sender so."""
        inc.durable = max(inc.durable, offset)
        return FileAck(transfer_id=inc.offer.transfer_id, offset=offset)

    def stream_fits(self, inc: Incoming | None, offset: int, length: int) -> bool:
        """A direct stream may carry ``[offset, offset+length)`` only as the rest of the file, once."""
        return inc is not None and not inc.direct_active and offset == inc.offset and offset + length == inc.offer.size

    def end(self, end: FileEnd) -> Incoming | Abort | None:
        """``file_end``: the finished transfer (untracked now, to verify), an :class:`Abort`, or None (unknown id)."""
        inc = self.incoming.get(end.transfer_id)
        if inc is None:
            return None
        if inc.direct_active or inc.offset != inc.offer.size or end.size != inc.offer.size:
            return Abort(end.transfer_id, "bad_frame", f"file_end after {inc.offset} of {inc.offer.size} bytes")
        if not inc.offer.sha256:
            if not end.sha256:
                return Abort(end.transfer_id, "bad_frame", f"file_end for {inc.offer.name!r} names no sha256, and its offer named none either")
            inc.sha256 = end.sha256
        del self.incoming[end.transfer_id]
        return inc

    def pop(self, tid: str) -> Incoming | None:
        return self.incoming.pop(tid, None)

    def drain(self) -> list[Incoming]:
        """Every transfer still arriving (the link is gone)."""
        incoming, self.incoming = list(self.incoming.values()), {}
        return incoming

    @staticmethod
    def verdict(inc: Incoming, digest: str) -> FileDone | FileReject:
        """The answer to ``file_end`` once the whole ``.part`` hashed to ``digest``."""
        tid = inc.offer.transfer_id
        if not inc.sha256 or digest != inc.sha256:
            return FileReject(transfer_id=tid, code="hash_mismatch", message=f"{inc.offer.name!r} arrived corrupted (sha256 mismatch); partial copy discarded, send again")
        return FileDone(transfer_id=tid, sha256=inc.sha256)


# -- sender ----------------------------------------------------------------------------


class SenderCore:
    """One outgoing transfer: offer, the receiver's answers, the send window."""

    def __init__(self, transfer_id: str, name: str, size: int, sha256: str, resume_key: str = "") -> None:
        self.transfer_id = transfer_id
        self.tid_bytes = bytes.fromhex(transfer_id)
        self.name, self.size, self.sha256 = name, size, sha256
        self.offer_sha256 = sha256  # empty: the digest follows in ``file_end``
        self.resume_key = resume_key
        self.acked = 0
        self.error: BaseException | None = None
        self.direct: DirectOffer | None = None

    def offer(self) -> FileOffer:
        return FileOffer(transfer_id=self.transfer_id, name=self.name, size=self.size, sha256=self.offer_sha256, resume_key=self.resume_key)

    def end(self, sha256: str = "") -> FileEnd:
        """``file_end``; names ``sha256`` when the offer did not (hashed while sending)."""
        return FileEnd(transfer_id=self.transfer_id, size=self.size, sha256="" if self.offer_sha256 else sha256)

    def fail(self, exc: BaseException) -> bool:
        """Record the first failure; True if this one is it."""
        if self.error is None:
            self.error = exc
            return True
        return False

    def receive(self, msg: Any) -> Any:
        """Fold a receiver message into the state; returns it when the sender must see it as a reply.

        ``file_ack`` only advances the window; ``file_reject`` becomes the failure (returned as
        the :class:`TransferError` to raise); ``direct_offer`` is remembered and returned too
        (it precedes ``file_accept``)."""
        if isinstance(msg, FileAck):
            self.ack(msg.offset)
            return None
        if isinstance(msg, FileReject):
            exc = TransferError(msg.code, f"receiver refused the file: {msg.message}")
            self.fail(exc)
            return exc
        if isinstance(msg, DirectOffer):
            self.direct = msg
        return msg

    def ack(self, offset: int) -> None:
        """The receiver holds ``offset`` bytes durably (acks never go back)."""
        self.acked = max(self.acked, offset)

    def resume_offset(self, reply: FileAccept) -> int:
        """The offset ``file_accept`` asks for, refused when it lies beyond the file."""
        if not 0 <= reply.offset <= self.size:
            raise TransferError("bad_frame", f"receiver asked to resume at {reply.offset}, beyond the file size {self.size}")
        return reply.offset

    def window_open(self, offset: int) -> bool:
        """May the chunk at ``offset`` go? Not while more than ``SEND_WINDOW`` bytes are unacknowledged:
        the receiver's disk and hash set the pace, so a fast link never piles the file up in its memory."""
        return offset - self.acked <= SEND_WINDOW or self.error is not None

    def chunk(self, offset: int, data: bytes | memoryview) -> bytes:
        return frame_chunk(self.tid_bytes, offset, data)
