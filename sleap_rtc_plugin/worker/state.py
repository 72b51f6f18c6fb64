"""The worker's status machine: ``available → reserved → busy → available``.

One place decides what the worker is doing, so the coordinator never hears
"available" while a sleap-nn process still runs: :meth:`WorkerState.finish`
refuses while the job reports a live process (the job session calls it only
after the engine's ``run()`` returned, which happens only once the process has
exited, cancelled or not). Observers (the network layer) are
called with a :class:`StatusSnapshot` on every change.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

logger = logging.getLogger(__name__)


class Status(str, enum.Enum):
    AVAILABLE = "available"
    RESERVED = "reserved"
    BUSY = "busy"


class InvalidTransition(RuntimeError):
    """A status change the machine does not allow (a bug in the caller)."""


class WorkerBusy(RuntimeError):
    """The worker cannot take a job now; the message says what to do instead."""


class RunningJob(Protocol):
    """What the status machine needs of a job: its id, whether a process still runs, a summary."""

    job_id: str

    @property
    def running(self) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class StatusSnapshot:
    status: Status
    client_id: str | None = None
    job_id: str | None = None
    job_type: str | None = None
    progress: str | None = None
    since: float = 0.0

    def as_dict(self) -> dict:
        return {
            "status": self.status.value,
            "client_id": self.client_id,
            "job_id": self.job_id,
            "job_type": self.job_type,
            "progress": self.progress,
            "since": self.since,
        }


Observer = Callable[[StatusSnapshot], Any]

_JOB_VERB = {"train": "training", "track": "running inference for"}


class WorkerState:
    """Status of one worker; every transition goes through a method here."""

    def __init__(self, name: str):
        self.name = name
        self._status = Status.AVAILABLE
        self._client_id: str | None = None
        self._job_id: str | None = None
        self._job_type: str | None = None
        self._job: RunningJob | None = None
        self._since = time.time()
        self._observers: list[Observer] = []

    @property
    def status(self) -> Status:
        return self._status

    @property
    def job(self) -> RunningJob | None:
        return self._job

    def snapshot(self) -> StatusSnapshot:
        progress = None
        if self._job is not None:
            try:
                progress = self._job.describe()
            except Exception:
                progress = None
        return StatusSnapshot(self._status, self._client_id, self._job_id, self._job_type, progress, self._since)

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        self._observers.remove(observer)

    def _set(self, status: Status, **fields: Any) -> None:
        old = self._status
        self._status = status
        for key in ("client_id", "job_id", "job_type", "job"):
            if key in fields:
                setattr(self, f"_{key}", fields[key])
        self._since = time.time()
        logger.info("worker %s: %s -> %s (job %s)", self.name, old.value, status.value, self._job_id)
        self.notify()

    def notify(self) -> None:
        """Send the current snapshot to every observer (also used for progress)."""
        snap = self.snapshot()
        for observer in list(self._observers):
            try:
                observer(snap)
            except Exception:
                logger.exception("worker %s: status observer failed", self.name)

    def busy_message(self) -> str:
        if self._status is Status.BUSY:
            verb = _JOB_VERB.get(self._job_type or "", "running")
            detail = self.snapshot().progress
            text = f"worker {self.name} is busy {verb} job {self._job_id}"
            if detail:
                text += f" ({detail})"
        else:
            text = f"worker {self.name} is reserved by another client"
        return text + "; pick another worker or use --queue"

    def reserve(self, client_id: str) -> None:
        """``available → reserved`` for ``client_id``; :class:`WorkerBusy` otherwise."""
        if self._status is not Status.AVAILABLE:
            raise WorkerBusy(self.busy_message())
        self._set(Status.RESERVED, client_id=client_id)

    def unreserve(self, client_id: str | None = None) -> None:
        """``reserved → available`` when the client leaves before starting a job."""
        if self._status is not Status.RESERVED:
            raise InvalidTransition(f"cannot unreserve worker {self.name}: it is {self._status.value}")
        if client_id is not None and client_id != self._client_id:
            raise InvalidTransition(f"client {client_id} does not hold the reservation of worker {self.name}")
        self._set(Status.AVAILABLE, client_id=None)

    def start(self, job: RunningJob, job_type: str, client_id: str | None = None) -> None:
        """``reserved → busy`` with ``job``; only the reserving client may start."""
        if self._status is not Status.RESERVED:
            raise InvalidTransition(f"cannot start a job on worker {self.name}: it is {self._status.value}, not reserved")
        if client_id is not None and client_id != self._client_id:
            raise InvalidTransition(f"client {client_id} did not reserve worker {self.name}")
        self._set(Status.BUSY, job_id=job.job_id, job_type=job_type, job=job)

    def finish(self) -> None:
        """``busy → available``; refused while the job's process still runs."""
        if self._status is not Status.BUSY:
            raise InvalidTransition(f"cannot finish on worker {self.name}: it is {self._status.value}")
        if self._job is not None and self._job.running:
            raise InvalidTransition(f"job {self._job_id} on worker {self.name} still has a running process")
        self._set(Status.AVAILABLE, client_id=None, job_id=None, job_type=None, job=None)
