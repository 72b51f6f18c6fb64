"""``job_submit`` on an authenticated link: receive the package, prepare, start the run.

Only the link that reserved the worker may submit, with an owner credential; the
package and every announced input must arrive (by hash) before the job starts. A
package that fails to unpack or validate frees the worker at once and, for a
queued attempt, is reported as the job's own failure (or the worker's, per
:class:`~.engine.JobFailedError`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from ..peer.errors import PeerLinkError
from ..peer.link import PeerLink
from ..protocol.job_state import JobState
from ..protocol.names import child_path
from ..protocol.peer import JobStatus, JobSubmit, PeerError
from .engine import JobEngine, JobFailedError
from .job_session import JobSession, ResultsHost
from .options import WorkerOptions
from .owners import MIN_OWNER_CHARS, owner_hash, owner_required
from .ports import Spawns


class SubmissionHost(ResultsHost, Spawns, Protocol):
    """What a submit needs of the worker: its reservation, which becomes a session."""

    @property
    def name(self) -> str: ...

    @property
    def options(self) -> WorkerOptions: ...

    @property
    def reserved(self) -> JobSession | None: ...

    @property
    def sessions(self) -> dict[str, JobSession]: ...

    def begin(self, session: JobSession) -> None: ...

    def release(self, client: str, job_id: str, state: JobState = JobState.CANCELLED) -> None: ...

log = logging.getLogger(__name__)


async def _receive_inputs(link: PeerLink, msg: JobSubmit) -> dict[str, Path] | None:
    """Files that arrived for this submit, by hash; ``None`` after telling the client why not."""
    by_sha: dict[str, Path] = {}
    wanted = {msg.package_sha256, *msg.inputs.values()}
    while not wanted <= by_sha.keys():
        try:
            received = await link.receive_file(timeout=10)
        except (PeerLinkError, asyncio.TimeoutError, TimeoutError):
            if by_sha:
                break
            await link.send(PeerError(code="no_package", message="the package did not arrive before job_submit; send it first", job_id=msg.job_id))
            return None
        if received.sha256 not in wanted:
            break  # not what the submit announces: answer now rather than wait for more files
        by_sha[received.sha256] = Path(received.path)
    if msg.package_sha256 not in by_sha:
        await link.send(PeerError(code="package_mismatch", message="the received package does not match the announced hash; submit again", job_id=msg.job_id))
        return None
    missing = sorted(name for name, sha in msg.inputs.items() if sha not in by_sha)
    if missing:
        await link.send(PeerError(code="no_package", message=f"input(s) {', '.join(missing)} did not arrive before job_submit; submit again", job_id=msg.job_id))
        return None
    return by_sha


async def submit(worker: SubmissionHost, link: PeerLink, client: str, msg: JobSubmit) -> None:
    session = worker.reserved
    if session is None or (session.client_id, session.job_id) != (client, msg.job_id):
        await link.send(PeerError(code="not_reserved", message="submit the job on the connection that reserved this worker", job_id=msg.job_id))
        return
    if len(msg.owner) < MIN_OWNER_CHARS:
        await link.send(owner_required(msg.job_id))
        return
    if msg.job_id in worker.sessions or await worker.outbox.aget(msg.job_id) is not None:
        worker.release(client, msg.job_id)
        await link.send(PeerError(code="job_exists", message=f"worker {worker.name} already holds a job {msg.job_id}; submit under a new job id", job_id=msg.job_id))
        return
    session.move(JobState.RECEIVING)
    by_sha = await _receive_inputs(link, msg)
    if by_sha is None:
        session.move(JobState.RESERVED)  # nothing arrived that we keep: the reservation stands for another submit
        return
    job_dir = child_path(worker.data_dir / "jobs", msg.job_id)
    inputs = {name: by_sha[sha] for name, sha in msg.inputs.items()}
    engine = JobEngine(msg.job_id, by_sha[msg.package_sha256], job_dir, kind=msg.kind, options=msg.options, cancel_grace=worker.options.cancel_grace,
                       inputs=inputs, max_unpacked_bytes=worker.options.max_unpacked_bytes, executor_factory=worker.options.executor_factory,
                       adopt_meta={"client": client, "owner_sha256": owner_hash(msg.owner)} if session.attempt is None else None)
    attempt = session.attempt
    try:
        spec = await engine.prepare()
    except JobFailedError as exc:
        worker.release(client, msg.job_id, JobState.FAILED)
        log.warning("job %s rejected: %s", msg.job_id, exc)
        if attempt is not None:
            attempt.end()
            await attempt.report("failed", failure="job" if exc.own_error else "infra", message=str(exc))
        await link.send(JobStatus(job_id=msg.job_id, state="failed", message=str(exc)))
        return
    if attempt is not None and msg.kind == "train":
        attempt.plan_resume(engine, spec)
    worker.begin(session)
    session.start(engine, msg.kind, link, owner_hash(msg.owner))
    if attempt is not None and attempt.expiry is not None:
        attempt.expiry.cancel()
        attempt.expiry = None
    detail = attempt.detail() if attempt is not None else {}
    await link.send(JobStatus(job_id=msg.job_id, state="running", message=f"{msg.kind} job started on {worker.name}", detail=detail))
    session.task = worker.spawn(session.run())
    if attempt is not None:
        worker.spawn(attempt.report_step(session, "running", message=f"running on {worker.name}", detail=detail))


__all__ = ["SubmissionHost", "submit"]
