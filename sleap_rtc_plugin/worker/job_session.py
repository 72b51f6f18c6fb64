"""One job on this worker, from reservation until its owner acknowledges the results.

A :class:`JobSession` is the single home of a job's state: ``reserved → receiving →
running (→ stopping) → outbox → acknowledged``, or ``failed``/``cancelled``
(:class:`~..protocol.job_state.JobState`). It owns the job's engine, the client links
following it (progress is broadcast to each), the hand-off of results to the outbox
and re-attaching clients. A queued job also carries its
:class:`~.queue_attempt.QueueAttempt` (reports, fencing, checkpoint relay).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Protocol

from ..peer.errors import PeerLinkError, TransferError
from ..peer.link import PeerLink
from ..protocol.job_state import JobState
from ..protocol.names import child_path
from ..protocol.peer import JobResult, JobStatus, Log, PeerError, Progress, ResultFile
from .engine import JobEngine, JobFailedError
from .log_batch import LogBatcher
from .options import WorkerOptions
from .outbox import Outbox
from .owners import OWNER_KEY
from .ports import Spawns
from .queue_attempt import QueueAttempt
from .replay import JobReplay
from .state import WorkerState

log = logging.getLogger(__name__)


class ResultsHost(Protocol):
    """Where a finished job's results are kept: the outbox, and the job's folders."""

    @property
    def outbox(self) -> Outbox: ...

    @property
    def data_dir(self) -> Path: ...


class SessionHost(ResultsHost, Spawns, Protocol):
    """What a job session needs of the worker that holds it."""

    last_error: str | None

    @property
    def name(self) -> str: ...

    @property
    def options(self) -> WorkerOptions: ...

    @property
    def state(self) -> WorkerState: ...

    @property
    def stopping(self) -> bool: ...

    def forget(self, session: "JobSession") -> None: ...

S = JobState
#: Each state and where it may go next; anything else is a bug in the caller.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.RESERVED: frozenset({S.RECEIVING, S.CANCELLED}),
    S.RECEIVING: frozenset({S.RUNNING, S.FAILED, S.CANCELLED, S.RESERVED}),  # back: the files never came
    S.RUNNING: frozenset({S.STOPPING, S.OUTBOX, S.FAILED, S.CANCELLED}),
    S.STOPPING: frozenset({S.OUTBOX, S.FAILED, S.CANCELLED}),
    S.OUTBOX: frozenset({S.ACKNOWLEDGED}),
    S.ACKNOWLEDGED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


class InvalidJobTransition(RuntimeError):
    """A job state change :data:`TRANSITIONS` does not allow (a bug in the caller)."""


class JobSession:
    def __init__(self, worker: SessionHost, job_id: str, client_id: str, *, attempt: QueueAttempt | None = None):
        self.worker = worker
        self.job_id = job_id
        self.client_id = client_id
        self.attempt = attempt
        self.state = JobState.RESERVED
        self.kind = ""
        self.started_at = time.time()
        self.last_progress: dict[str, Any] = {}
        self.followers: set[PeerLink] = set()
        self.engine: JobEngine | None = None
        self.task: asyncio.Task | None = None
        self.message = ""
        self.owner_sha256: str | None = None
        self.replay = JobReplay()

    def __repr__(self) -> str:
        return f"JobSession({self.job_id!r}, {self.state.value}, client={self.client_id!r})"

    def move(self, new: JobState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise InvalidJobTransition(f"job {self.job_id}: {self.state.value} -> {new.value} is not allowed")
        log.debug("job %s: %s -> %s", self.job_id, self.state.value, new.value)
        self.state = new

    @property
    def superseded(self) -> bool:
        return self.attempt is not None and self.attempt.stale

    @property
    def live(self) -> bool:
        """sleap-nn (or its preparation) is still this session's to run or stop."""
        return self.task is not None and not self.task.done()

    # -- followers -------------------------------------------------------------------
    async def broadcast(self, msg: Any) -> None:
        for follower in list(self.followers):
            if follower.closed.is_set():
                self.followers.discard(follower)
                continue
            try:
                await follower.send(msg)
            except PeerLinkError:
                self.followers.discard(follower)

    # -- running -----------------------------------------------------------------------
    def start(self, engine: JobEngine, kind: str, link: PeerLink, owner_sha256: str | None) -> None:
        """``receiving → running``: the worker turns busy; the caller then spawns :meth:`run`."""
        self.engine, self.kind, self.owner_sha256 = engine, kind, owner_sha256
        self.followers.add(link)
        self.move(S.RUNNING)
        self.worker.state.start(engine, kind, self.client_id)

    async def run(self) -> None:
        engine, d, worker = self.engine, self.attempt, self.worker
        assert engine is not None
        log.info("job %s (%s) running for %s", self.job_id, self.kind, self.client_id)

        async def send_log(text: str) -> None:
            await self.broadcast(Log(job_id=self.job_id, line=text))

        logs = LogBatcher(send_log)

        async def on_event(event: dict[str, Any]) -> None:
            if event.get("kind") == "log":
                line = str(event.get("line", ""))
                self.replay.record_log(line)
                if logs.add(line):
                    await logs.flush_soon()
                return
            await logs.flush()
            self.last_progress = event
            self.replay.record(event)
            await self.broadcast(Progress(job_id=self.job_id, event=event))
            if d is not None and event.get("event") == "epoch_end" and time.monotonic() - d.last_progress_report >= 1.0:
                d.last_progress_report = time.monotonic()
                worker.spawn(d.report_step(self, "progress", detail={"model": event.get("model"), "epoch": event.get("epoch")}))

        stop_relay = asyncio.Event()
        relay = None
        if d is not None and self.kind == "train" and worker.options.checkpoint_interval > 0:
            relay = worker.spawn(d.relay_checkpoints(self, stop_relay))
        entry = None
        failure: str | None = None
        try:
            output = await engine.run(on_event)
            await logs.flush()
            stop_relay.set()
            if relay is not None:
                await asyncio.gather(relay, return_exceptions=True)
            entry = await worker.outbox.aput(
                self.job_id, job_type=self.kind, run_dirs=output.run_dirs, files=output.files,
                metadata={"client": self.client_id, "worker": worker.name, "attempt": d.attempt if d else None, OWNER_KEY: self.owner_sha256},
            )
            self.move(S.OUTBOX)
            log.info("job %s succeeded; %d result file(s) in the outbox", self.job_id, len(entry.files))
        except JobFailedError as exc:
            self.move(S.CANCELLED if exc.cancelled else S.FAILED)
            self.message = str(exc)
            # A worker shutting down cancels its job: that is not the job's fault.
            failure = "infra" if (exc.cancelled and worker.stopping) or not exc.own_error else "job"
            worker.last_error = f"job {self.job_id}: {exc}"
            log.error("job %s %s: %s", self.job_id, self.state.value, exc)
        except Exception as exc:  # noqa: BLE001 - disk full, outbox write: the worker's failure, not the job's
            self.move(S.FAILED)
            self.message, failure = f"worker error: {exc}", "infra"
            worker.last_error = f"job {self.job_id}: {exc}"
            log.exception("job %s failed on the worker side", self.job_id)
        finally:
            with contextlib.suppress(Exception):
                await logs.flush()
            stop_relay.set()
            if relay is not None:
                await asyncio.gather(relay, return_exceptions=True)
            try:
                if d is not None and not d.stale:
                    await d.final_report(self, failure)
            finally:
                if d is not None:
                    d.end()
                worker.state.finish()
        await self._announce_end(entry is not None)

    async def _announce_end(self, has_results: bool) -> None:
        if self.superseded:
            if has_results:
                await self.worker.outbox.aack(self.job_id)
            await self.broadcast(JobStatus(job_id=self.job_id, state="cancelled", message="this attempt was superseded by a newer one; its results are discarded"))
            self.worker.forget(self)
            return
        if not has_results:
            await self.broadcast(JobStatus(job_id=self.job_id, state=self.state.value, message=self.message,  # type: ignore[arg-type]
                                           detail={"log_tail": self.replay.tail()}))
            self.worker.forget(self)
            return
        await self.broadcast(JobStatus(job_id=self.job_id, state="succeeded", message=f"{self.kind} job finished"))
        for follower in list(self.followers):
            self.worker.spawn(send_results(self.worker, follower, self.job_id))

    async def control(self, link: PeerLink, command: str) -> None:
        """Stop early or cancel; the caller has checked the owner."""
        assert self.engine is not None
        if command == "stop":
            log.info("job %s: stop early requested", self.job_id)
            if self.state is S.RUNNING:
                self.move(S.STOPPING)
            await self.engine.stop_early()
        else:
            log.info("job %s: cancel requested", self.job_id)
            await self.engine.cancel(self.worker.options.cancel_grace)

    async def attach(self, link: PeerLink) -> None:
        """A client (back) on a running job: it follows progress from now on."""
        self.followers.add(link)
        await link.send(JobStatus(job_id=self.job_id, state="running", message="attached to running job",
                                  detail={"progress": self.last_progress, "log_tail": list(self.replay.log_tail)}))
        for event in list(self.replay.events):  # the curve so far (engineer G's replay), then live events follow
            await link.send(Progress(job_id=self.job_id, event={**event, "replayed": True}))
        log.info("client attached to running job %s", self.job_id)

    async def acknowledge(self) -> None:
        """``outbox → acknowledged``: the owner has the results; drop every copy here."""
        if self.state is S.OUTBOX:
            self.move(S.ACKNOWLEDGED)
        await drop_job_files(self.worker, self.job_id)


async def drop_job_files(worker: ResultsHost, job_id: str) -> None:
    await worker.outbox.aack(job_id)
    await asyncio.to_thread(shutil.rmtree, child_path(worker.data_dir / "incoming", job_id), True)
    await asyncio.to_thread(shutil.rmtree, child_path(worker.data_dir / "jobs", job_id), True)


async def send_results(worker: ResultsHost, link: PeerLink, job_id: str) -> None:
    """Send an outbox entry's files to ``link`` (a follower at the end, or an attach later)."""
    entry = await worker.outbox.aget(job_id)
    if entry is None:
        return
    files = [ResultFile(name=f.name, size=f.size, sha256=f.sha256, role=f.kind) for f in entry.files]
    try:
        await link.send(JobResult(job_id=job_id, files=files))
        for f in entry.files:
            sent = await link.send_file(entry.file_path(f.name), name=f.name)
            log.info("job %s: sent result %s", job_id, sent.summary())
    except PeerLinkError as exc:
        log.warning("job %s: sending results failed (%s); they stay in the outbox for --attach", job_id, exc)
        if isinstance(exc, TransferError):  # the client's receiver refused (a full disk): tell it now, not after its timeout
            with contextlib.suppress(PeerLinkError):
                await link.send(PeerError(code=exc.code, message=str(exc), job_id=job_id))


__all__ = ["InvalidJobTransition", "JobSession", "ResultsHost", "SessionHost", "TRANSITIONS", "drop_job_files", "send_results"]
