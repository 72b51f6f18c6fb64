"""Coordinator messages for the job queue, worker job reports and administration.

Registered into :data:`~.coordinator.COORDINATOR`: they travel on the same websocket
as registration and relay. The coordinator still never sees job data: ``spec`` is
what the client chooses to say about the job (kind, package name and size, options),
and the package itself goes client → worker over the peer link once dispatched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .base import Message, require
from .names import JobId, OwnerSecret, PeerId, Sha256
from .coordinator import COORDINATOR, MAX_ID

#: States of a queued job, in the order a healthy job passes through them.
#: ``results_ready``: a training job finished on its worker and its results wait in the
#: worker's outbox; it becomes ``succeeded`` once the client reports ``results_received``.
QueueState = Literal["queued", "dispatched", "running", "results_ready", "succeeded", "failed", "cancelled"]
#: What a client may report about the attempt it follows (``client_report``).
ClientOutcome = Literal["auth_failed", "results_received"]
#: What a worker may report about an attempt.
ReportState = Literal["accepted", "running", "progress", "checkpoint", "succeeded", "failed", "rejected"]
#: ``infra``: the worker/network broke (retried on another worker); ``job``: the job's own
#: error, e.g. sleap-nn exited non-zero (not retried unless the job asks for it).
FailureKind = Literal["infra", "job"]
AdminAction = Literal[
    "workers", "jobs", "drain", "undrain", "labels", "token_create", "token_rotate", "token_revoke", "audit", "cancel",
    "room_policy",
]

MAX_PRIORITY = 1_000_000
MAX_RETRIES = 100


@dataclass
class Requirements:
    """What a worker must offer to get the job.

    ``labels`` values are shell-style globs (``fnmatch``): ``{"gpu": "a100*"}`` matches a
    worker labelled ``gpu=a100-80g``. ``worker_id`` pins the job to one worker.
    """

    min_gpu_memory_mb: int = 0
    gpu_count: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    worker_id: PeerId | None = None


@COORDINATOR.register
@dataclass
class QueueSubmit(Message):
    """Client → coordinator: hold this job and dispatch it to the first matching worker.

    ``job_id`` is chosen by the client (so a retry of the request is idempotent);
    ``max_retries`` bounds infrastructure retries; ``retry_job_errors`` also retries
    attempts that failed by the job's own error. ``owner_hash`` is the SHA-256 (hex) of a
    secret only the submitting client keeps: the coordinator stores the hash and asks for
    the secret before anyone else may watch (take over) or cancel the job.
    """

    TYPE = "queue_submit"
    spec: dict[str, Any]
    job_id: JobId
    requirements: Requirements = field(default_factory=Requirements)
    priority: int = 0
    max_retries: int = 3
    retry_job_errors: bool = False
    owner_hash: Sha256 | None = None
    ref: str | None = None

    def validate(self) -> None:
        require(0 < len(self.job_id) <= MAX_ID, "bad_value", f"job_id must be 1..{MAX_ID} characters")
        require(abs(self.priority) <= MAX_PRIORITY, "bad_value", f"priority must be within ±{MAX_PRIORITY}")
        require(0 <= self.max_retries <= MAX_RETRIES, "bad_value", f"max_retries must be 0..{MAX_RETRIES}")
        r = self.requirements
        require(r.min_gpu_memory_mb >= 0 and r.gpu_count >= 0, "bad_value", "min_gpu_memory_mb and gpu_count must not be negative")
        require(len(r.labels) <= 32, "bad_value", "at most 32 label requirements")


@COORDINATOR.register
@dataclass
class Queued(Message):
    """Reply to ``queue_submit``: accepted, and where it stands (0 = next)."""

    TYPE = "queued"
    job_id: JobId
    position: int
    ref: str | None = None


@COORDINATOR.register
@dataclass
class QueueWatch(Message):
    """Client → coordinator: follow (and own) an existing job from this connection,
    e.g. after the client restarted. Answered with a ``queue_update``. ``owner`` is the
    secret whose hash was submitted with the job; required when one was."""

    TYPE = "queue_watch"
    job_id: JobId
    owner: OwnerSecret | None = None
    ref: str | None = None


@COORDINATOR.register
@dataclass
class QueueCancel(Message):
    """Client → coordinator: withdraw a job that has not finished. Answered with ``ok``.
    ``owner`` as for :class:`QueueWatch`."""

    TYPE = "queue_cancel"
    job_id: JobId
    owner: OwnerSecret | None = None
    ref: str | None = None


@COORDINATOR.register
@dataclass
class ClientReport(Message):
    """Client → coordinator, about the attempt it follows; only the job's current client
    may send it. Answered with ``ok``.

    ``auth_failed``: the dispatched worker failed the room-secret proof, so it is not a
    worker of this room: the attempt is requeued (an infrastructure failure) and that
    worker is never given this job again. ``results_received``: the client holds the
    verified results; a training job waiting in ``results_ready`` becomes ``succeeded``.
    """

    TYPE = "client_report"
    job_id: JobId
    attempt: int
    outcome: ClientOutcome
    message: str = ""
    ref: str | None = None

    def validate(self) -> None:
        require(self.attempt >= 1, "bad_value", "attempt must be at least 1")
        require(len(self.message) <= 1000, "bad_value", "message must be at most 1000 characters")


@COORDINATOR.register
@dataclass
class QueueUpdate(Message):
    """Coordinator → client: the job moved (position, dispatch, requeue, end).

    On ``dispatched`` the client opens a peer link to ``worker_id`` (offer with
    ``intent: submit`` and this ``job_id``) and, when ``attempt > 1``, hands over its
    latest relayed checkpoint so the new worker resumes from it.
    """

    TYPE = "queue_update"
    job_id: JobId
    state: QueueState
    position: int | None = None
    attempt: int = 0
    worker_id: PeerId | None = None
    message: str = ""
    checkpoint: dict[str, Any] | None = None
    ref: str | None = None


@COORDINATOR.register
@dataclass
class JobDispatch(Message):
    """Coordinator → worker: attempt ``attempt`` of ``job_id`` is yours. Expect an offer
    from ``client_id``; report ``accepted`` (or ``rejected``) with this attempt."""

    TYPE = "job_dispatch"
    job_id: JobId
    attempt: int
    client_id: PeerId
    spec: dict[str, Any]
    lease_seconds: float
    checkpoint: dict[str, Any] | None = None


@COORDINATOR.register
@dataclass
class JobReport(Message):
    """Worker → coordinator: status, progress, checkpoint or result of one attempt.

    Refused with ``stale_attempt`` when ``attempt`` is not the job's current attempt
    (the job was requeued meanwhile: this worker must stop), and with
    ``not_assigned`` when the job is not this worker's.
    """

    TYPE = "job_report"
    job_id: JobId
    attempt: int
    state: ReportState
    failure: FailureKind | None = None
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    ref: str | None = None


@COORDINATOR.register
@dataclass
class AdminRequest(Message):
    """An administrator's request, authenticated by an admin token (stored hashed).
    Allowed without ``register``."""

    TYPE = "admin"
    token: str
    action: AdminAction
    args: dict[str, Any] = field(default_factory=dict)
    ref: str | None = None

    def validate(self) -> None:
        require(0 < len(self.token) <= 512, "bad_value", "token must be 1..512 characters")


@COORDINATOR.register
@dataclass
class AdminResult(Message):
    TYPE = "admin_result"
    action: str
    result: Any = None
    ref: str | None = None


#: Types only the coordinator sends (refused when a peer sends them).
SENT_BY_COORDINATOR = frozenset({Queued.TYPE, QueueUpdate.TYPE, JobDispatch.TYPE, AdminResult.TYPE})


# --- peer link: checkpoint relay for queued training jobs ------------------------

from .peer import PEER  # noqa: E402  (peer registry; imported here to keep queue frames together)


@PEER.register
@dataclass
class CheckpointNotice(Message):
    """Worker → client before relaying a checkpoint file (or client → new worker before
    handing it over for resume). The file follows as an ordinary hashed transfer."""

    TYPE = "checkpoint"
    job_id: JobId
    attempt: int
    model: str
    sha256: str
    size: int
    epoch: int | None = None
