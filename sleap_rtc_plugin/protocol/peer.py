"""Messages on the client<->worker data channel (control plane).

File-transfer frames live in :mod:`.transfer`; both register into :data:`PEER`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .base import Message, Registry

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
    peer_id: str
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
    """Run a job on a package the client has already transferred (by its sha256)."""

    TYPE = "job_submit"
    job_id: str
    kind: JobKind
    package_sha256: str
    package_name: str
    options: dict[str, Any] = field(default_factory=dict)


@PEER.register
@dataclass
class JobStatus(Message):
    TYPE = "job_status"
    job_id: str
    state: JobState
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@PEER.register
@dataclass
class Progress(Message):
    """One training/inference progress event, as SLEAP's ZMQ messages carry them."""

    TYPE = "progress"
    job_id: str
    event: dict[str, Any]


@PEER.register
@dataclass
class Log(Message):
    TYPE = "log"
    job_id: str
    line: str


@dataclass
class ResultFile:
    name: str
    size: int
    sha256: str
    role: str = "model"


@PEER.register
@dataclass
class JobResult(Message):
    """Files the worker holds in its outbox for this job, ready to be pulled."""

    TYPE = "job_result"
    job_id: str
    files: list[ResultFile]


@PEER.register
@dataclass
class ResultAck(Message):
    """The client has every result file verified: the worker may drop its outbox copy."""

    TYPE = "result_ack"
    job_id: str


@PEER.register
@dataclass
class ResultReleased(Message):
    """The worker dropped its outbox copy after a ``result_ack``; the client may hang up."""

    TYPE = "result_released"
    job_id: str


@PEER.register
@dataclass
class Control(Message):
    TYPE = "control"
    job_id: str
    command: Literal["stop", "cancel"]


@PEER.register
@dataclass
class Attach(Message):
    """Reconnect to a job this client submitted earlier (results, progress)."""

    TYPE = "attach"
    job_id: str


@PEER.register
@dataclass
class PeerError(Message):
    TYPE = "peer_error"
    code: str
    message: str
    job_id: str | None = None


@PEER.register
@dataclass
class Keepalive(Message):
    TYPE = "keepalive"
    ts: float = 0.0
