"""Streamed, hashed, resumable file transfer for one link: both directions behind one object.

The pieces, each small and on its own:

- :mod:`.transfer_core` -- the protocol as a state machine, no I/O (chunk frames, the
  receiver's offsets and verdicts, the sender's window, the resume sidecar, ENOSPC);
- :mod:`.staging` -- the receiver's disk: ``.part`` + sidecar, cache, atomic placement;
- :mod:`.transfer_send` / :mod:`.transfer_recv` / :mod:`.direct_recv` -- the asyncio
  drivers for the data channel, the direct TLS stream and shared storage;
- :mod:`.ports` -- what the drivers need from the link (``send``, ``reply_error``, bytes).

Exchange (``protocol/transfer.py``): ``file_offer`` -> ``file_accept(offset | cached)``
-> chunks from ``offset`` (``file_ack`` every ``ACK_EVERY`` bytes, once durable) ->
``file_end`` -> ``file_done`` | ``file_reject``. An offer of content the receiver holds
partially resumes at its durable offset; content it has cached costs one round trip.
All file I/O and hashing run in threads; memory use is one chunk per side plus the
transport's send buffer. ``SentFile.via`` / ``ReceivedFile.via`` say which path was used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..protocol.transfer import DirectOffer, FileAccept, FileAck, FileDone, FileReject, PathFailed
from .cache import DEFAULT_MAX_BYTES as DEFAULT_CACHE_MAX_BYTES
from .file_names import resolve_inside, sanitize_name
from .ports import TransferPort
from .staging import DISK, FREE_SPACE_MARGIN, DiskIO, FileReceiver
from .transfer_core import ACK_EVERY, CHUNK_SIZE, DEFAULT_MAX_SIZE
from .transfer_recv import ReceivedFile, Receiver
from .transfer_send import TransferProgress, SentFile, Sender

__all__ = [
    "ACK_EVERY", "CHUNK_SIZE", "DEFAULT_CACHE_MAX_BYTES", "DEFAULT_MAX_SIZE", "FREE_SPACE_MARGIN", "FileReceiver", "TransferProgress",
    "ReceivedFile", "SentFile", "Transfers", "resolve_inside", "sanitize_name",
]

_TO_SENDER = (FileAccept, FileAck, FileDone, FileReject, DirectOffer, PathFailed)


class Transfers:
    """Both directions of file transfer for one link; driven by the link's pump."""

    def __init__(self, port: TransferPort, io: DiskIO = DISK) -> None:
        self.sender = Sender(port, io)
        self.incoming = Receiver(port)

    @property
    def receiver(self) -> FileReceiver | None:
        """Where incoming files go (None: this link accepts none)."""
        return self.incoming.receiver

    @receiver.setter
    def receiver(self, value: FileReceiver | None) -> None:
        self.incoming.receiver = value

    @property
    def received(self):
        """Completed incoming files, in order."""
        return self.incoming.received

    async def send_file(self, path: Path, *, name: str | None, progress: TransferProgress | None) -> SentFile:
        return await self.sender.send_file(path, name=name, progress=progress)

    def fail_outgoing(self, exc: BaseException) -> None:
        self.sender.fail_all(exc)

    async def on_control(self, msg: Any) -> None:
        if isinstance(msg, _TO_SENDER):
            self.sender.deliver(msg)
        else:
            await self.incoming.on_control(msg)

    async def on_chunk(self, frame: bytes) -> None:
        await self.incoming.on_chunk(frame)

    async def shutdown(self) -> None:
        await self.incoming.shutdown()
