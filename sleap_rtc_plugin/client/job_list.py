"""A project's remote jobs as a list: read, merged with the queue, fetched once, run again.

The job list itself is files (``jobs_store.JobList``); this module is what the CLI and
the GUI's Remote Jobs panel call. ``list_jobs`` asks the coordinator about jobs that
went through its queue and are not over yet (position, state, worker), so the list is
right even after this computer was off while the job moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..coordinator.client import CoordinatorError
from ..protocol.job_state import JobState
from .connect import ConnectionSpec, QueueOptions, open_coordinator
from .errors import RemoteError
from .handle_state import ended, state_of
from .jobs_store import JobList, JobRecord, OwnerStore

if TYPE_CHECKING:
    from .job_handle import JobHandle

log = logging.getLogger(__name__)


async def list_jobs(project_dir: Path, spec: ConnectionSpec | None = None) -> list[JobRecord]:
    """This project's jobs, newest first. With ``spec``, queued jobs that are not over and
    that nothing in this process follows are refreshed from the coordinator (and the
    refreshed entries written back). Asking makes this call the job's follower at the
    coordinator, so a CLI following the same job elsewhere stops hearing of it: ask on a
    user's Refresh, not on a timer."""
    store = JobList(project_dir)
    records = await asyncio.to_thread(store.all)
    from .job_handle import live_handle

    # queue_watch makes the asking connection the job's follower: never ask for a job a
    # handle in this process follows (it would stop getting the job's updates).
    open_queued = [r for r in records if r.queue is not None and not ended(_state(r)) and not r.fetched and live_handle(r.job_id) is None]
    if spec is None or not open_queued:
        return records
    try:
        resolved = spec.resolved()
        owners = OwnerStore(project_dir)
        async with open_coordinator(resolved) as coord:
            for record in open_queued:
                owner = await asyncio.to_thread(owners.get, record.job_id)
                try:
                    update = await coord.queue_watch(record.job_id, owner=owner)
                except CoordinatorError as exc:
                    log.info("job %s: the coordinator does not say (%s)", record.job_id, exc.code)
                    continue
                record.state = state_of(update.state, _state(record)).value
                record.position = update.position
                record.worker_id = update.worker_id or record.worker_id
                record.message = update.message or record.message
                await asyncio.to_thread(store.put, record)
    except RemoteError as exc:
        log.info("job list not refreshed from the coordinator: %s", exc)
    return records


def _state(record: JobRecord) -> JobState:
    try:
        return JobState(record.state)
    except ValueError:  # a hand-edited entry: treat it as over
        return JobState.FAILED


def fetch_job(job_id: str, spec: ConnectionSpec, *, project_dir: Path, publish_port: int | None = None,
              controller_port: int | None = None) -> "JobHandle | None":
    """Follow a listed job and fetch its results; ``None`` when they were fetched already
    (a second fetch does nothing). A queued job is followed through the queue with its
    kept package. Must be called with an event loop running; reads one small file."""
    from .job_handle import JobHandle

    record = JobList(project_dir).get(job_id)
    if record is None:
        raise RemoteError("unknown_job", f"job {job_id} is not in this project's job list ({Path(project_dir) / '.sleap-rtc' / 'joblist'})")
    if record.fetched:
        return None
    spec = connection_of(record, spec)
    queue = QueueOptions(**record.queue) if record.queue is not None else None
    package = Path(record.package) if record.package else None
    return JobHandle(record.kind, spec, project_dir=project_dir, package_path=package, job_id=job_id, intent="attach",  # type: ignore[arg-type]
                     publish_port=publish_port, controller_port=controller_port, queue=queue,
                     inputs={k: Path(v) for k, v in record.inputs.items()}, local_files={k: Path(v) for k, v in record.local_files.items()})


def run_again(job_id: str, spec: ConnectionSpec, *, project_dir: Path, publish_port: int | None = None,
              controller_port: int | None = None) -> "JobHandle":
    """Submit a listed job's package again, with the same kind, options, inputs and queue
    options, as a new job. ``spec`` says where (the stored connection has no token)."""
    from .job_handle import JobHandle

    record = JobList(project_dir).get(job_id)
    if record is None:
        raise RemoteError("unknown_job", f"job {job_id} is not in this project's job list")
    if not record.package or not Path(record.package).is_file():
        raise RemoteError("no_package", f"job {job_id}'s package is no longer kept ({record.package}); submit it again from the Train/Track dialog")
    queue = QueueOptions(**record.queue) if record.queue is not None else None
    spec = connection_of(record, spec, worker=False)
    return JobHandle(record.kind, spec, project_dir=project_dir, package_path=Path(record.package), options=dict(record.options),  # type: ignore[arg-type]
                     publish_port=publish_port, controller_port=controller_port, queue=queue,
                     inputs={k: Path(v) for k, v in record.inputs.items()}, local_files={k: Path(v) for k, v in record.local_files.items()})


async def forget_job(job_id: str, *, project_dir: Path) -> None:
    """Remove a job from the list (and its kept package). Installed results stay, and so
    does its owner credential while the worker may still hold its results."""
    await asyncio.to_thread(JobList(project_dir).remove, job_id)


def connection_of(record: JobRecord, base: ConnectionSpec | None = None, *, worker: bool = True) -> ConnectionSpec:
    """The connection a listed job used, with the token and secret taken from ``base``;
    ``worker``: the worker that ran it (to reach its outbox), else the one first asked for."""
    spec = ConnectionSpec(**{k: getattr(base, k) for k in ConnectionSpec.__dataclass_fields__}) if base else ConnectionSpec()
    known: dict[str, Any] = record.connection or {}
    with contextlib.suppress(TypeError):
        spec.server_url = known.get("server_url") or spec.server_url
        spec.room_id = known.get("room_id") or spec.room_id
        spec.worker_id = (record.worker_id if worker else None) or known.get("worker_id") or spec.worker_id
        spec.auto_select = bool(known.get("auto_select", spec.auto_select))
    return spec
