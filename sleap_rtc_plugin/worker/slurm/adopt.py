"""A restarted worker takes back the jobs Slurm kept running while it was away.

A Slurm job outlives the worker process that submitted it (that is the point of a
scheduler), so a worker that stops while its job trains leaves the job running, and
its next start follows it again and delivers the results as if nothing had happened.
What it needs is kept next to the job on the staging filesystem: ``slurm/job.json``
(who the job is for, how its models were named and overridden) and one
``slurm/<model>/record.json`` per submitted command (the Slurm job id). The record is
removed when the job ends; a job with one is unfinished business.

Queued jobs are not adopted: when their worker goes away the coordinator requeues
them and the next attempt resumes from the last relayed checkpoint, so the worker
cancels their Slurm job on the way out instead of leaving it to run twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from ...protocol.job_state import JobState
from ...protocol.names import is_plain_file_name
from ..engine import JobEngine
from ..job_record import JOB_RECORD
from ..outbox import Outbox
from ..ports import Spawns
from ..state import WorkerState


class AdoptedSession(Protocol):
    """What adoption sets on the :class:`~..job_session.JobSession` an adopted job runs in."""

    engine: JobEngine | None
    kind: str
    owner_sha256: str | None
    task: asyncio.Task | None

    def move(self, new: JobState) -> None: ...

    async def run(self) -> None: ...


class ExecutorChoice(Protocol):
    """The worker option adoption reads: where jobs run (None: locally, nothing to adopt)."""

    @property
    def executor_factory(self) -> Any: ...


S = TypeVar("S", bound=AdoptedSession)


class AdoptHost(Spawns, Protocol[S]):
    """What taking Slurm jobs back needs of the worker: its sessions, reservation and outbox.

    Generic in the session type, so this Slurm module names no worker-level part above it
    (the worker's options module builds the Slurm executor: a cycle otherwise)."""

    @property
    def options(self) -> ExecutorChoice: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def state(self) -> WorkerState: ...

    @property
    def sessions(self) -> Mapping[str, S]: ...

    def reserve(self, client: str, job_id: str) -> S: ...

    def begin(self, session: S) -> None: ...


log = logging.getLogger(__name__)

def _records(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(root.glob(f"*/slurm/{JOB_RECORD}")):
        job_dir = path.parent.parent
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("job_id") == job_dir.name and is_plain_file_name(job_dir.name) \
                and record.get("kind") in ("train", "track") and isinstance(record.get("client"), str):
            found.append((job_dir, record))
    return found


def adopted_engine(job_dir: Path, record: dict[str, Any], factory: Any) -> JobEngine:
    """A :class:`JobEngine` for an already-unpacked job, its models named as before."""
    from ..package import parse_job_dir

    spec = parse_job_dir(job_dir / "package")
    names = record.get("run_names") or {}
    spec.models = [dataclasses.replace(m, run_name=str(names.get(m.head, m.run_name))) for m in spec.models]
    engine = JobEngine(record["job_id"], job_dir / "package.zip", job_dir, kind=record["kind"], options=record.get("options") or {},
                       overrides=list(record.get("overrides") or []), model_overrides=dict(record.get("model_overrides") or {}),
                       executor_factory=factory, adopt_meta={"client": record["client"], "owner_sha256": record.get("owner_sha256")})
    engine.job_dir = job_dir
    engine.finish_from = {head: Path(p) for head, p in (record.get("finish_from") or {}).items()}
    engine.spec = spec
    return engine


async def adopt_jobs(worker: AdoptHost[S]) -> list[str]:
    """Follow again every unfinished Slurm job this worker submitted; ids of those adopted.

    Staging dirs without a record (finished jobs whose results are in the outbox, or gone)
    are removed here: the outbox holds the results, the cluster's disk need not."""
    factory = worker.options.executor_factory
    if factory is None:
        return []
    root = Path(factory.staging_dir) if factory.staging_dir else worker.data_dir / "jobs"
    adopted: list[str] = []
    for job_dir, record in await asyncio.to_thread(_records, root):
        job_id = record["job_id"]
        if adopted or job_id in worker.sessions or await worker.outbox.aget(job_id) is not None:
            log.warning("job %s: a Slurm job record is left in %s but this worker is busy or already has the job; not adopting it", job_id, job_dir)
            continue
        try:
            engine = await asyncio.to_thread(adopted_engine, job_dir, record, factory)
        except Exception as exc:  # noqa: BLE001 - a damaged staging dir must not stop the worker
            log.error("job %s: cannot adopt its Slurm job (%s)", job_id, exc)
            continue
        session = worker.reserve(record["client"], job_id)
        session.move(JobState.RECEIVING)
        worker.begin(session)
        session.engine, session.kind, session.owner_sha256 = engine, record["kind"], record.get("owner_sha256")
        session.move(JobState.RUNNING)
        worker.state.start(engine, record["kind"], record["client"])
        session.task = worker.spawn(session.run())
        adopted.append(job_id)
        log.info("job %s: adopted its Slurm job(s) after a restart; results go to the outbox", job_id)
    if factory.staging_dir:
        live = {d.name for d, _ in await asyncio.to_thread(_records, root)}
        for child in await asyncio.to_thread(lambda: [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []):
            if child.name not in live and child.name not in worker.sessions:
                await asyncio.to_thread(shutil.rmtree, child, True)
    return adopted
