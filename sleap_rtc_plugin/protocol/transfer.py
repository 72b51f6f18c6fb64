"""File-transfer control frames on the client<->worker data channel.

Bulk bytes never travel as JSON: each chunk is one *binary* data-channel message
with a fixed header (see :mod:`sleap_rtc_plugin.peer.transfer_core`). These JSON frames
negotiate a transfer, resume it and report its outcome. Exchange::

    sender                                   receiver
    file_offer(id, name, size, sha256)  -->
                                        <--  file_accept(id, offset, cached)   # resume point
    [binary chunks from offset ...]     -->                                    # unless cached
                                        <--  file_ack(id, offset)              # every few MiB
    file_end(id, size)                  -->
                                        <--  file_done(id, sha256)  | file_reject(id, code, ...)

``file_reject`` may arrive at any point (bad name, too large, disk full, hash
mismatch); ``file_cancel`` lets the sender abandon a transfer.

Faster paths (see :mod:`sleap_rtc_plugin.peer.fastpath`) slot into the same exchange
and are only used between peers that announced them in their ``hello``:

- ``direct_offer`` (receiver, just before ``file_accept``): the bytes may instead go
  over a TLS stream to ``host:port`` whose certificate sha256 is pinned here and
  which admits the one-time ``token``. ``file_end`` follows on the data channel.
- ``file_via_path`` (sender, after ``file_accept``): the file is on storage both see;
  the receiver checks the probe, hashes the file it reads and answers ``file_done``.
- ``path_failed`` (receiver): that faster path did not work; the sender continues
  over the data channel from ``offset``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Message, require
from .peer import PEER

MAX_NAME = 1024


def _check_sha(value: str) -> None:
    require(
        len(value) == 64 and all(c in "0123456789abcdef" for c in value),
        "bad_value",
        "sha256 must be 64 lowercase hex characters",
    )


def _check_id(value: str) -> None:
    require(len(value) == 32 and all(c in "0123456789abcdef" for c in value), "bad_value", "transfer_id must be 32 hex characters")


@PEER.register
@dataclass
class FileOffer(Message):
    """The sender announces a file. ``name`` is a relative path the receiver sanitizes.

    ``sha256`` empty: the sender hashes while it sends and names the digest in ``file_end``.
    ``resume_key`` (32 hex): the sender's name for this version of the file; a receiver keys
    the partial copy by it instead of the digest, so a transfer that started before the
    digest was known resumes. Both only to peers announcing ``+hashend``."""

    TYPE = "file_offer"
    transfer_id: str
    name: str
    size: int
    sha256: str
    resume_key: str = ""

    def validate(self) -> None:
        _check_id(self.transfer_id)
        if self.sha256:
            _check_sha(self.sha256)
        if self.resume_key:
            require(len(self.resume_key) == 32 and all(c in "0123456789abcdef" for c in self.resume_key), "bad_value", "resume_key must be 32 hex characters")
        require(bool(self.sha256 or self.resume_key), "bad_value", "file_offer needs a sha256 or a resume_key")
        require(0 < len(self.name) <= MAX_NAME, "bad_value", f"file name must be 1..{MAX_NAME} characters")
        require(self.size >= 0, "bad_value", "size must be >= 0")


@PEER.register
@dataclass
class FileAccept(Message):
    """Receiver's answer to an offer: send from ``offset`` (the resume point), or nothing if ``cached``."""

    TYPE = "file_accept"
    transfer_id: str
    offset: int = 0
    cached: bool = False

    def validate(self) -> None:
        _check_id(self.transfer_id)
        require(self.offset >= 0, "bad_value", "offset must be >= 0")


@PEER.register
@dataclass
class FileAck(Message):
    """Bytes up to ``offset`` are on the receiver's disk and recorded in its resume sidecar."""

    TYPE = "file_ack"
    transfer_id: str
    offset: int


@PEER.register
@dataclass
class FileEnd(Message):
    """The sender has sent every byte; the receiver verifies the whole file and answers.

    ``sha256``: the digest, when the offer left it empty (hashed while sending)."""

    TYPE = "file_end"
    transfer_id: str
    size: int
    sha256: str = ""

    def validate(self) -> None:
        if self.sha256:
            _check_sha(self.sha256)


@PEER.register
@dataclass
class FileDone(Message):
    TYPE = "file_done"
    transfer_id: str
    sha256: str
    cached: bool = False


@PEER.register
@dataclass
class FileReject(Message):
    """A transfer failed on the receiver. ``code``: bad_name, too_large, disk_full, hash_mismatch, io_error, bad_frame, busy."""

    TYPE = "file_reject"
    transfer_id: str
    code: str
    message: str


@PEER.register
@dataclass
class FileCancel(Message):
    TYPE = "file_cancel"
    transfer_id: str
    reason: str = ""


@PEER.register
@dataclass
class DirectOffer(Message):
    """Receiver: this transfer's bytes may come over TLS to ``host:port`` (cert pinned, one-time token)."""

    TYPE = "direct_offer"
    transfer_id: str
    host: str
    port: int
    token: str
    cert_sha256: str

    def validate(self) -> None:
        _check_id(self.transfer_id)
        _check_sha(self.cert_sha256)
        _check_sha(self.token)
        require(0 < self.port < 65536, "bad_value", "port must be 1..65535")
        require(0 < len(self.host) <= 255, "bad_value", "host must be 1..255 characters")


@PEER.register
@dataclass
class FileViaPath(Message):
    """Sender: the file is at ``path`` on storage the receiver mounts too; ``probe_*`` proves the mapping."""

    TYPE = "file_via_path"
    transfer_id: str
    path: str
    probe_path: str
    probe_sha256: str

    def validate(self) -> None:
        _check_id(self.transfer_id)
        _check_sha(self.probe_sha256)
        for value in (self.path, self.probe_path):
            require(0 < len(value) <= 4096, "bad_value", "paths must be 1..4096 characters")


@PEER.register
@dataclass
class PathFailed(Message):
    """Receiver: the ``path`` ("direct" or "shared") failed; continue over the data channel from ``offset``."""

    TYPE = "path_failed"
    transfer_id: str
    path: str
    reason: str
    offset: int = 0

    def validate(self) -> None:
        _check_id(self.transfer_id)
        require(self.offset >= 0, "bad_value", "offset must be >= 0")


TRANSFER_TYPES = frozenset(
    cls.TYPE
    for cls in (FileOffer, FileAccept, FileAck, FileEnd, FileDone, FileReject, FileCancel, DirectOffer, FileViaPath, PathFailed)
)
