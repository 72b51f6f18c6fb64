"""One attempt of a queued job on this worker: dispatch, reports, fencing, checkpoint relay.

The coordinator hands a queued job out as ``job_dispatch``; the worker reserves itself
for that client and reports each step of the attempt (``accepted``, ``running``,
``progress``, ``checkpoint``, ``succeeded``/``failed``). The moment the coordinator
answers a report with one of :data:`STOP_CODES`, a newer attempt owns the job
(fencing): this one is marked stale and its job stopped without results. A training
attempt relays ``last.ckpt`` to its client every ``checkpoint_interval`` seconds so a
later attempt can resume from it (docs/queue.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..coordinator.client import CoordinatorClient, CoordinatorError
from ..peer.errors import PeerLinkError
from ..peer.link import PeerLink
from ..protocol.job_state import JobState
from ..protocol.peer import Log
from ..protocol.queue import CheckpointNotice, JobDispatch
from .checkpoints import CheckpointWatcher, CheckpointSnapshot
from .engine import JobEngine
from .options import WorkerOptions
from .ports import Spawns
from .resume_plan import plan_resume
from .state import WorkerBusy

log = logging.getLogger(__name__)


class RunningSession(Protocol):
    """What an attempt reads of the :class:`~.job_session.JobSession` it belongs to."""

    @property
    def engine(self) -> JobEngine | None: ...

    @property
    def task(self) -> asyncio.Task | None: ...

    @property
    def state(self) -> JobState: ...

    @property
    def kind(self) -> str: ...

    @property
    def message(self) -> str: ...

    @property
    def followers(self) -> set[PeerLink]: ...


class AttemptLookup(Protocol):
    def attempt_for(self, job_id: str) -> "QueueAttempt | None": ...


class AttemptHost(AttemptLookup, Spawns, Protocol):
    """What a queue attempt needs of the worker: its coordinator, options and reservation."""

    @property
    def coordinator(self) -> CoordinatorClient | None: ...

    @property
    def options(self) -> WorkerOptions: ...

    @property
    def name(self) -> str: ...

    @property
    def stopping(self) -> bool: ...

    def reserve(self, client: str, job_id: str, attempt: "QueueAttempt | None" = None) -> object: ...

    def reserved_for(self, client: str, job_id: str) -> bool: ...

    def release(self, client: str, job_id: str, state: JobState = JobState.CANCELLED) -> None: ...

#: Coordinator answers that mean "this attempt is no longer yours: stop it".
STOP_CODES = frozenset({"stale_attempt", "unknown_job", "not_assigned"})


@dataclass
class Resume:
    """A checkpoint the client handed over, to resume one model head from."""

    path: Path
    model: str
    epoch: int | None
    sha256: str


@dataclass(eq=False)
class QueueAttempt:
    """One attempt of a queued job, from ``job_dispatch`` until it ends."""

    worker: AttemptHost = field(repr=False)
    job_id: str
    attempt: int
    client_id: str
    lease_seconds: float
    resume: Resume | None = None
    #: Every handed-over checkpoint by model head (a top-down job hands over one per model).
    resumes: dict[str, Resume] = field(default_factory=dict)
    expiry: asyncio.Task | None = field(default=None, repr=False)
    last_progress_report: float = 0.0
    #: Still this worker's: cleared when the attempt ends (ran, failed or was abandoned).
    active: bool = True
    #: Fenced off: a newer attempt owns the job, so this one ends without results.
    stale: bool = False

    # -- reports ------------------------------------------------------------------
    async def report(self, state: str, *, failure: str | None = None, message: str = "", detail: dict[str, Any] | None = None,
                     patience: float = 0.0) -> bool:
        """Tell the coordinator about this attempt. ``False``: the attempt is no longer this
        worker's (requeued, cancelled): stop it. Final reports wait out a coordinator
        outage for up to ``patience`` seconds, since the outcome must not be lost."""
        coordinator = self.worker.coordinator
        if coordinator is None:
            return True
        deadline = time.monotonic() + patience
        while True:
            try:
                await coordinator.report(self.job_id, self.attempt, state, failure=failure, message=message, detail=detail)
                return True
            except CoordinatorError as exc:
                if exc.code in STOP_CODES:
                    log.warning("job %s attempt %d: coordinator refused the %s report (%s); this attempt must stop", self.job_id, self.attempt, state, exc.code)
                    return False
                if exc.code in ("disconnected", "timeout") and time.monotonic() < deadline and not self.worker.stopping:
                    await asyncio.sleep(0.5)
                    continue
                log.warning("job %s attempt %d: %s report not delivered: %s", self.job_id, self.attempt, state, exc)
                return True

    async def report_step(self, session: RunningSession, state: str, **kw: Any) -> None:
        """A report during the run; a refusal fences the job off."""
        if self.stale:
            return
        if not await self.report(state, **kw):
            await self.supersede(session)

    async def supersede(self, session: RunningSession) -> None:
        """Fencing: a newer attempt owns this job now, so this one ends without results."""
        if self.stale:
            return
        self.stale = True
        log.warning("job %s: attempt %s is stale; stopping it", self.job_id, self.attempt)
        if session.engine is not None and session.task is not None and not session.task.done():
            await session.engine.cancel(self.worker.options.cancel_grace)

    async def final_report(self, session: RunningSession, failure: str | None) -> None:
        patience = self.worker.options.report_patience
        if session.state is JobState.OUTBOX:
            ok = await self.report("succeeded", message=f"{session.kind} job finished on {self.worker.name}", patience=patience)
        else:
            ok = await self.report("failed", failure=failure or "infra", message=session.message or session.state.value, patience=patience)
        if not ok:
            self.stale = True

    # -- lifetime -------------------------------------------------------------------
    def end(self) -> None:
        self.active = False
        if self.expiry is not None and self.expiry is not asyncio.current_task():
            self.expiry.cancel()
        self.expiry = None

    async def expire_after(self, timeout: float) -> None:
        """A client that never submits must not hold the worker forever."""
        await asyncio.sleep(timeout)
        if self.active and self.worker.reserved_for(self.client_id, self.job_id):
            self.expiry = None
            await self.abandon(f"client {self.client_id} did not submit job {self.job_id} within {timeout:g}s of the dispatch")

    async def abandon(self, reason: str) -> None:
        """The attempt never became a running job: free the worker and let the
        coordinator requeue it (an infrastructure failure, not the job's)."""
        self.end()
        self.worker.release(self.client_id, self.job_id)
        log.warning("job %s attempt %d abandoned: %s", self.job_id, self.attempt, reason)
        await self.report("failed", failure="infra", message=reason)

    # -- resuming ---------------------------------------------------------------------
    def plan_resume(self, engine: JobEngine, spec: Any) -> None:
        """Queued training writes ``last.ckpt`` every epoch (what the relay sends) and
        resumes each model from the client's copy when it has one (:mod:`.resume_plan`)."""
        resumed = plan_resume(engine, spec.models, self.resumes, self.attempt)
        if self.resume is not None and self.resume.model not in resumed:
            self.resume = None

    def detail(self) -> dict[str, Any]:
        """What the ``running`` status and report say about this attempt."""
        return {"attempt": self.attempt, "resumed_from": None if self.resume is None else {"model": self.resume.model, "epoch": self.resume.epoch}}

    async def relay_checkpoints(self, session: RunningSession, stop: asyncio.Event) -> None:
        """Every ``checkpoint_interval`` s, send a new ``last.ckpt`` to the job's client
        (notice, then a hashed file transfer) and report its metadata. Stops between
        two transfers, never inside one, so results never interleave with a checkpoint."""
        engine = session.engine
        assert engine is not None
        interval = self.worker.options.checkpoint_interval

        async def send(snap: CheckpointSnapshot) -> None:
            model = engine.model_for_run_dir(snap.source.parent) or snap.source.parent.name
            epoch = engine.completed_epochs.get(model, engine.completed_epoch)
            notice = CheckpointNotice(job_id=self.job_id, attempt=self.attempt, model=model, sha256=snap.sha256, size=snap.size, epoch=epoch)
            sent = 0
            for follower in list(session.followers):
                if follower.closed.is_set():
                    continue
                try:
                    await follower.send(notice)
                    await follower.send_file(snap.path, name=f"checkpoint-{model}.ckpt")
                    sent += 1
                except PeerLinkError as exc:
                    log.warning("job %s: relaying a checkpoint failed: %s", self.job_id, exc)
            if sent:
                log.info("job %s: relayed checkpoint of %s (epoch %s, %.1f MB)", self.job_id, model, epoch, snap.size / 1e6)
                await self.report_step(session, "checkpoint", detail={"model": model, "epoch": epoch, "sha256": snap.sha256, "size": snap.size})

        watcher = CheckpointWatcher(engine.output_dir, engine.job_dir / "checkpoint-staging", interval, send)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
            if stop.is_set() or self.stale:
                return
            try:
                await watcher.poll_once()
            except Exception as exc:  # noqa: BLE001 - a failed relay must not stop training
                log.warning("job %s: checkpoint relay failed (retrying next interval): %s", self.job_id, exc)


async def on_dispatch(worker: AttemptHost, msg: JobDispatch) -> None:
    """``job_dispatch`` from the coordinator: reserve this worker for the job's client."""
    current = worker.attempt_for(msg.job_id)
    if current is not None and current.attempt >= msg.attempt:
        return
    attempt = QueueAttempt(worker, msg.job_id, msg.attempt, msg.client_id, msg.lease_seconds)
    try:
        worker.reserve(msg.client_id, msg.job_id, attempt)
    except WorkerBusy as exc:
        log.info("job %s attempt %d: rejecting the dispatch (%s)", msg.job_id, msg.attempt, exc)
        await attempt.report("rejected", message=str(exc))
        return
    log.info("job %s attempt %d dispatched by the coordinator; reserved for client %s", msg.job_id, msg.attempt, msg.client_id)
    if not await attempt.report("accepted"):
        attempt.end()
        worker.release(msg.client_id, msg.job_id)
        return
    attempt.expiry = worker.spawn(attempt.expire_after(max(60.0, 4 * msg.lease_seconds)))


async def receive_resume(worker: AttemptLookup, link: PeerLink, client: str, msg: CheckpointNotice) -> None:
    """Before submitting a later attempt, the client hands over the newest relayed
    checkpoint; training resumes from it instead of from scratch."""
    d = worker.attempt_for(msg.job_id)
    try:
        got = await link.receive_file(timeout=max(60.0, msg.size / 1e6))
    except (PeerLinkError, TimeoutError) as exc:
        await link.send(Log(job_id=msg.job_id, line=f"checkpoint not received ({exc}); training starts from scratch"))
        return
    if d is None or d.client_id != client or got.sha256 != msg.sha256:
        await asyncio.to_thread(Path(got.path).unlink, True)
        why = "its hash does not match" if d is not None and got.sha256 != msg.sha256 else "the job was not dispatched to this worker for this client"
        await link.send(Log(job_id=msg.job_id, line=f"checkpoint refused ({why}); training starts from scratch"))
        return
    d.resume = d.resumes[msg.model] = Resume(Path(got.path), msg.model, msg.epoch, msg.sha256)
    log.info("job %s attempt %d: received checkpoint of %s (epoch %s) to resume from", d.job_id, d.attempt, msg.model, msg.epoch)


__all__ = ["AttemptHost", "AttemptLookup", "QueueAttempt", "RunningSession", "Resume", "STOP_CODES", "on_dispatch", "receive_resume"]
