"""The submitting side as a library: one code path for the CLI and the SLEAP GUI.

``submit_training`` / ``submit_inference`` / ``attach`` return a :class:`JobHandle`
at once and do the work in a task on the running event loop (asyncio under the CLI,
qasync under SLEAP's Qt loop): find the worker through the coordinator, open the
WebRTC link, authenticate, send the package, relay progress, fetch the results into
the project, and acknowledge them so the worker can empty its outbox.

With ``queue=QueueOptions(...)`` the job goes through the coordinator's queue instead
(docs/queue.md): the handle reports the queue position, connects to whichever worker
the job is dispatched to, keeps the checkpoints that worker relays, hands the newest
one to the next worker when the job is requeued, and accepts results only from the
current attempt.

Every job is kept in the project's job list (``jobs_store.JobList``): ``list_jobs``
reads it back merged with what the coordinator's queue knows, ``fetch_job`` fetches a
job's results once (a second call does nothing), ``run_again`` submits the same
package with the same options, ``forget_job`` removes an entry.

The pieces live in small modules: ``connect.py`` (where a job runs), ``job_handle.py``
(the job and its state), ``queue_follow.py`` (the queued path), ``outcome.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from .connect import DEFAULT_SERVER, ConnectionSpec, QueueOptions, list_workers
from .errors import RemoteError
from ..protocol.job_state import JobState
from .job_handle import JobHandle, live_handle
from .job_list import fetch_job, forget_job, list_jobs, run_again
from .jobs_store import JobRecord
from .outcome import EventKind, JobEvent, JobOutcome
from .selection import WorkerInfo


def submit_training(
    package_path: Path,
    spec: ConnectionSpec,
    *,
    project_dir: Path,
    publish_port: int | None = None,
    controller_port: int | None = None,
    options: dict[str, Any] | None = None,
    queue: QueueOptions | None = None,
    local_files: dict[str, Path] | None = None,
) -> JobHandle:
    """Train remotely (through the coordinator's queue with ``queue``). Must be called
    with an event loop running."""
    return JobHandle("train", spec, project_dir=project_dir, package_path=package_path,
                     publish_port=publish_port, controller_port=controller_port, options=options, queue=queue, local_files=local_files)


def submit_inference(package_path: Path, spec: ConnectionSpec, *, project_dir: Path, options: dict[str, Any] | None = None,
                     queue: QueueOptions | None = None, inputs: dict[str, Path] | None = None,
                     local_files: dict[str, Path] | None = None) -> JobHandle:
    """Predict remotely; predictions land under ``<project_dir>/predictions/``.

    ``inputs``: file name -> local file sent beside the package and placed at
    ``inputs/<name>`` on the worker (a video its ``jobs.yaml`` predicts on). Sent on their
    own, they hit the worker's content cache: the same video is never sent twice.
    """
    return JobHandle("track", spec, project_dir=project_dir, package_path=package_path, options=options, queue=queue, inputs=inputs,
                     local_files=local_files)


def attach(job_id: str, spec: ConnectionSpec, *, project_dir: Path, kind: Literal["train", "track"] = "train",
           publish_port: int | None = None, controller_port: int | None = None, queue: QueueOptions | None = None,
           package_path: Path | None = None, inputs: dict[str, Path] | None = None) -> JobHandle:
    """Reconnect to a job submitted earlier: follow its progress and fetch its results.
    With ``queue`` the job is one in the coordinator's queue (maybe not dispatched yet):
    it is followed through the queue, and ``package_path`` (and ``inputs``) go to the
    worker that takes it. A running job first replays its epochs so far."""
    return JobHandle(kind, spec, project_dir=project_dir, package_path=package_path, job_id=job_id, intent="attach",
                     publish_port=publish_port, controller_port=controller_port, queue=queue, inputs=inputs)


__all__ = ["DEFAULT_SERVER", "ConnectionSpec", "EventKind", "JobEvent", "JobHandle", "JobOutcome", "JobState", "JobRecord", "QueueOptions",
           "RemoteError", "WorkerInfo", "attach", "fetch_job", "forget_job", "list_jobs", "list_workers", "live_handle", "run_again",
           "submit_inference", "submit_training"]
