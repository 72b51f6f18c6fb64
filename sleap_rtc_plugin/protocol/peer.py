"""Messages on the client<->worker data channel (control plane).

File-transfer frames live in :mod:`.transfer`; both register into :data:`PEER`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from .base import Message, ProtocolError, Registry
from .names import FileName, JobId, OwnerSecret, PeerId, Sha256, is_plain_file_name

MAX_INPUTS = 64
INPUTS_DIR = "inputs"  # where a job's inputs land in the unpacked package, and their transfer names' folder
_SHA256 = re.compile(r"[0-9a-f]{64}")

#: Kept for callers; the one definition lives in :mod:`.names`.
plain_file_name = is_plain_file_name

PEER = Registry("peer")

JobKind = Literal["train", "track"]
JobState = Literal["queued", "accepted", "transferring", "running", "stopping", "succeeded", "failed", "cancelled"]


# --- authentication (see peer/auth.py for the construction) -------------------


@PEER.register
@dataclass
class Hello(Message):
    """First frame each side sends: who it is and whether it requires a room secret."""

    TYPE = "hello"
    role: Literal["worker", "client"]
    peer_id: PeerId
    auth_required: bool = False
    software: str = ""


@PEER.register
@dataclass
class AuthChallenge(Message):
    TYPE = "auth_challenge"
    nonce: str


@PEER.register
@dataclass
class AuthResponse(Message):
    TYPE = "auth_response"
    mac: str


@PEER.register
@dataclass
class AuthResult(Message):
    TYPE = "auth_result"
    ok: bool
    reason: str = ""


# --- jobs --------------------------------------------------------------------


@PEER.register
@dataclass
class JobSubmit(Message):
    """Run a job on a package the client has already transferred (by its sha256).

    ``inputs``: plain file name -> sha256 of files transferred beside the package (a video
    to predict on); the worker places them at ``inputs/<name>`` in the unpacked package.
    Sent on their own, they are content-addressed: the same video never travels twice.

    ``owner``: the job's owner credential, made by the client at submit; the worker keeps
    only its sha256 and asks for it again on ``attach``, ``control`` and ``result_ack``.
    """

    TYPE = "job_submit"
    job_id: JobId
    kind: JobKind
    package_sha256: Sha256
    package_name: FileName
    options: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    owner: OwnerSecret = ""

    def validate(self) -> None:
        if len(self.inputs) > MAX_INPUTS:
            raise ProtocolError("bad_value", f"job_submit.inputs has {len(self.inputs)} entries; at most {MAX_INPUTS}")
        for name, sha in self.inputs.items():
            if not plain_file_name(name):
                raise ProtocolError("bad_value", f"job_submit.inputs name {name[:80]!r} must be a plain file name")
            if not _SHA256.fullmatch(sha):
                raise ProtocolError("bad_value", f"job_submit.inputs[{name[:80]!r}] must be a sha256 hex digest")


@PEER.register
@dataclass
class JobStatus(Message):
    TYPE = "job_status"
    job_id: JobId
    state: JobState
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@PEER.register
@dataclass
class Progress(Message):
    """One training/inference progress event, as SLEAP's ZMQ messages carry them."""

    TYPE = "progress"
    job_id: JobId
    event: dict[str, Any]


@PEER.register
@dataclass
class Log(Message):
    TYPE = "log"
    job_id: JobId
    line: str


@dataclass
class ResultFile:
    name: FileName
    size: int
    sha256: Sha256
    role: str = "model"


@PEER.register
@dataclass
class JobResult(Message):
    """Files the worker holds in its outbox for this job, ready to be pulled."""

    TYPE = "job_result"
    job_id: JobId
    files: list[ResultFile]


@PEER.register
@dataclass
class ResultAck(Message):
    """The client has every result file verified: the worker may drop its outbox copy."""

    TYPE = "result_ack"
    job_id: JobId
    owner: OwnerSecret = ""


@PEER.register
@dataclass
class ResultReleased(Message):
    """The worker dropped its outbox copy after a ``result_ack``; the client may hang up."""

    TYPE = "result_released"
    job_id: JobId


@PEER.register
@dataclass
class Control(Message):
    TYPE = "control"
    job_id: JobId
    command: Literal["stop", "cancel"]
    owner: OwnerSecret = ""


@PEER.register
@dataclass
class Attach(Message):
    """Reconnect to a job this client submitted earlier (results, progress); ``owner``
    is the credential the job was submitted with."""

    TYPE = "attach"
    job_id: JobId
    owner: OwnerSecret = ""


@PEER.register
@dataclass
class PeerError(Message):
    TYPE = "peer_error"
    code: str
    message: str
    job_id: JobId | None = None


@PEER.register
@dataclass
class Keepalive(Message):
    TYPE = "keepalive"
    ts: float = 0.0
