"""The job queue: hold jobs, dispatch them to matching workers, lease, fence, requeue.

Working state lives in memory (one event loop, so each synchronous step is atomic)
and every change is written through to SQLite (:mod:`.jobstore`), from which a
restarted coordinator reloads it.

- **Dispatch**: a queued job whose client is connected goes to the first available,
  non-drained worker of its room that meets its requirements (GPU memory, GPU count,
  glob labels, optional pinned worker), highest priority first, then first come.
  Workers that already failed the job are avoided while another matching one exists.
- **Lease**: a dispatched attempt holds a lease that every frame from its worker
  (heartbeat ``pong`` included) renews. A worker silent past ``lease + grace`` loses
  the job; a shorter blip (the worker reconnects and keeps heartbeating) does not.
- **Fencing**: each dispatch increments the job's attempt number; reports carrying
  another attempt are refused with ``stale_attempt``, so a worker that lost its lease
  can never overwrite the outcome of the attempt that replaced it.
- **Requeue**: infrastructure failures go back to the queue (keeping their place)
  up to ``max_retries`` times; a job that fails by its own error ends ``failed``
  unless it asked for ``retry_job_errors``.
- **Trust**: only workers enrolled with a worker token get dispatches, unless the room
  allows room-token workers; a worker's ``succeeded`` only moves a training job to
  ``results_ready`` -- the client's ``results_received`` makes it ``succeeded``, and its
  ``auth_failed`` requeues the attempt and bans that worker from the job. A job
  submitted with an owner hash is watched or cancelled only with the owner's secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

from ..protocol.base import ProtocolError
from ..protocol.queue import ClientReport, JobDispatch, JobReport, QueueSubmit, QueueUpdate
from .jobstore import CANCELLED, DISPATCHED, FAILED, QUEUED, RESULTS_READY, RUNNING, SUCCEEDED, JobStore, QueuedJob, WorkerRecord
from .presence import PeerEntry, Presence, rank
from ..util.clock import SYSTEM_CLOCK, Clock
from ..util.tasks import TaskSet
from .queue_limits import QueueLimits
from .requirements import check_owner, requirements_met

log = logging.getLogger(__name__)

Auditor = Callable[..., None]
#: Checkpoint metadata kept per job (it is echoed in every dispatch and update).
MAX_CHECKPOINT_INFO = 4096


class JobQueue:
    def __init__(
        self,
        store: JobStore,
        presence: Presence,
        *,
        lease_seconds: float = 60.0,
        reconnect_grace: float = 60.0,
        audit: Auditor | None = None,
        allow_room_token_workers: bool = False,
        limits: QueueLimits | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.store = store
        #: Leases and dispatch deadlines are read from this (tests pass a ManualClock).
        self.clock = clock
        self.limits = limits or QueueLimits()
        self.allow_room_token_workers = allow_room_token_workers
        #: Rooms whose admin chose otherwise than the server default.
        self.room_policy: dict[str, bool] = {}
        self.presence = presence
        self.lease_seconds = lease_seconds
        self.reconnect_grace = reconnect_grace
        self._audit = audit or (lambda *a, **k: None)
        self.jobs: dict[str, QueuedJob] = {}
        self.workers: dict[tuple[str, str], WorkerRecord] = {}
        self._held: dict[tuple[str, str], str] = {}
        self._persisted_lease: dict[str, float] = {}
        self._dispatched_at: dict[str, float] = {}
        self._sent_position: dict[str, int] = {}
        self._progress: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()
        self._writes = TaskSet(log, "queue")

    # --- startup ------------------------------------------------------------------

    async def load(self) -> None:
        """Reload unfinished jobs and worker records. Active jobs get one fresh lease:
        the coordinator being down is no worker's fault."""
        now = self.clock.time()
        self.room_policy = await self.store.room_policies()
        for record in await self.store.find_workers():
            self.workers[(record.room_id, record.worker_id)] = record
        for job in await self.store.load_jobs():
            self.jobs[job.job_id] = job
            if job.active and job.worker_id:
                job.lease_expires_at = max(job.lease_expires_at or 0.0, now + self.lease_seconds)
                self._held[(job.room_id, job.worker_id)] = job.job_id
                self._dispatched_at[job.job_id] = self.clock.monotonic()
                await self.store.save_job(job)
        if self.jobs:
            log.info("queue reloaded %d unfinished job(s)", len(self.jobs))

    # --- worker records (admin labels, drain) ----------------------------------------

    def record(self, room_id: str, worker_id: str) -> WorkerRecord | None:
        return self.workers.get((room_id, worker_id))

    def set_record(self, record: WorkerRecord) -> None:
        self.workers[(record.room_id, record.worker_id)] = record

    def drained(self, room_id: str, worker_id: str) -> bool:
        rec = self.workers.get((room_id, worker_id))
        return bool(rec and rec.drained)

    def holding(self, room_id: str, worker_id: str) -> str | None:
        return self._held.get((room_id, worker_id))

    def allows_room_token_workers(self, room_id: str) -> bool:
        return self.room_policy.get(room_id, self.allow_room_token_workers)

    def may_take_jobs(self, worker: PeerEntry) -> bool:
        """Enrolled (worker token) workers always; room-token ones only where the room allows."""
        return worker.via_token or self.allows_room_token_workers(worker.room_id)

    # --- positions --------------------------------------------------------------------

    def _queued(self, room_id: str) -> list[QueuedJob]:
        jobs = [j for j in self.jobs.values() if j.room_id == room_id and j.state == QUEUED]
        jobs.sort(key=lambda j: (-j.priority, j.seq))
        return jobs

    def position(self, job: QueuedJob) -> int | None:
        if job.state != QUEUED:
            return None
        for i, other in enumerate(self._queued(job.room_id)):
            if other is job:
                return i
        return None

    def _notify(self, job: QueuedJob, *, message: str = "", ref: str | None = None) -> None:
        client = self.presence.get(job.room_id, job.client_id)
        pos = self.position(job)
        if pos is not None:
            self._sent_position[job.job_id] = pos
        if client is None:
            return
        client.link.send(
            QueueUpdate(
                job_id=job.job_id, state=job.state, position=pos, attempt=job.attempt,  # type: ignore[arg-type]
                worker_id=job.worker_id, message=message or job.message, checkpoint=job.checkpoint, ref=ref,
            )
        )

    def _push_positions(self, room_id: str) -> None:
        for i, job in enumerate(self._queued(room_id)):
            if self._sent_position.get(job.job_id) != i:
                self._notify(job, message=f"position {i} in the queue")

    # --- client requests --------------------------------------------------------------

    async def submit(self, client: PeerEntry, msg: QueueSubmit) -> QueuedJob:
        existing = self.jobs.get(msg.job_id) or await self.store.get_job(msg.job_id)
        if existing is not None:
            if existing.room_id != client.room_id or existing.client_id != client.peer_id or existing.owner_hash != msg.owner_hash:
                raise ProtocolError("job_exists", f"job id {msg.job_id[:64]!r} is taken; submit with a new job id", ref=msg.ref)
            return existing  # a retried submit: idempotent
        self.limits.check(self.jobs.values(), client.room_id, client.peer_id, msg.ref)
        req = msg.requirements
        job = QueuedJob(
            job_id=msg.job_id, room_id=client.room_id, client_id=client.peer_id, spec=msg.spec,
            requirements={"min_gpu_memory_mb": req.min_gpu_memory_mb, "gpu_count": req.gpu_count, "labels": dict(req.labels), "worker_id": req.worker_id},
            priority=msg.priority, max_retries=msg.max_retries, retry_job_errors=msg.retry_job_errors, owner_hash=msg.owner_hash,
        )
        job.seq = await self.store.insert_job(job)
        self.jobs[job.job_id] = job
        log.info("job queued room=%s job=%s client=%s priority=%d requirements=%s", job.room_id, job.job_id, job.client_id, job.priority, job.requirements)
        self._audit("job_queued", client.peer_id, room_id=job.room_id, subject=job.job_id, detail={"priority": job.priority, "requirements": job.requirements})
        self._sent_position[job.job_id] = self.position(job) or 0
        return job

    async def watch(self, client: PeerEntry, job_id: str, ref: str | None, owner: str | None = None) -> None:
        job = self.jobs.get(job_id) or await self.store.get_job(job_id)
        if job is None or job.room_id != client.room_id:
            raise ProtocolError("unknown_job", f"no job {job_id[:64]!r} in this room", ref=ref)
        check_owner(job, owner, ref)
        if job.job_id in self.jobs and job.client_id != client.peer_id:
            log.info("job %s now followed by client %s (was %s)", job_id, client.peer_id, job.client_id)
            job.client_id = client.peer_id
            await self.store.save_job(job)
        self._notify(job, ref=ref)
        await self.dispatch(job.room_id)

    async def cancel(self, client: PeerEntry | None, job_id: str, *, actor: str, ref: str | None = None, owner: str | None = None) -> QueuedJob:
        """Withdraw a job: the admin (``client`` is ``None``) always; a client with the
        owner's secret, or -- for a job submitted without an owner hash -- its own client."""
        job = self.jobs.get(job_id)
        if job is None or (client is not None and job.room_id != client.room_id):
            raise ProtocolError("unknown_job", f"no unfinished job {job_id[:64]!r} of yours", ref=ref)
        if client is not None:
            if job.owner_hash is None and job.client_id != client.peer_id:
                raise ProtocolError("unknown_job", f"no unfinished job {job_id[:64]!r} of yours", ref=ref)
            check_owner(job, owner, ref)
        await self._finish(job, CANCELLED, f"cancelled by {actor}")
        return job

    async def client_report(self, client: PeerEntry, msg: ClientReport) -> QueuedJob:
        """The following client's word on the current attempt (see :class:`ClientReport`)."""
        job = self.jobs.get(msg.job_id)
        if job is None:
            done = await self.store.get_job(msg.job_id)
            if done is None or done.room_id != client.room_id:
                raise ProtocolError("unknown_job", f"no job {msg.job_id[:64]!r} in this room", ref=msg.ref)
            if done.client_id == client.peer_id and msg.outcome == "results_received" and done.state == SUCCEEDED and msg.attempt == done.attempt:
                return done  # a repeated confirmation
            raise ProtocolError("unknown_job", f"job {msg.job_id} already ended {done.state}; nothing to report", ref=msg.ref)
        if job.room_id != client.room_id:
            raise ProtocolError("unknown_job", f"no job {msg.job_id[:64]!r} in this room", ref=msg.ref)
        if job.client_id != client.peer_id:
            raise ProtocolError("not_owner", f"job {job.job_id} is followed by another client; only it may report on the job (queue_watch with the job's owner credential first)", ref=msg.ref)
        if msg.outcome == "auth_failed" and msg.attempt in job.attempt_workers and not (msg.attempt == job.attempt and job.worker_id):
            return await self._late_auth_failure(client, job, msg)
        if msg.outcome == "results_received" and 1 <= msg.attempt <= job.attempt and (msg.attempt != job.attempt or job.state == QUEUED):
            return await self._results_in_hand(client, job, msg)
        if msg.attempt != job.attempt:
            raise ProtocolError("stale_attempt", f"attempt {msg.attempt} of job {job.job_id} is stale (current attempt {job.attempt})", ref=msg.ref)
        worker_id = job.worker_id
        self._audit("client_report", client.peer_id, room_id=job.room_id, subject=job.job_id, detail={"attempt": msg.attempt, "outcome": msg.outcome, "worker": worker_id, "message": msg.message[:200]})
        if msg.outcome == "auth_failed":
            # results_ready too: a worker that cannot prove the room secret proves no model either.
            if not (job.active or job.state == RESULTS_READY):
                raise ProtocolError("bad_state", f"job {job.job_id} is {job.state}, not dispatched, running or results_ready; nothing to requeue", ref=msg.ref)
            if worker_id and worker_id not in job.banned:
                job.banned.append(worker_id)
            log.warning("job %s: client %s says worker %s failed authentication; requeueing without it", job.job_id, client.peer_id, worker_id)
            await self._requeue(job, f"worker {worker_id} failed the client's room-secret check" + (f" ({msg.message[:200]})" if msg.message else ""))
        else:
            if job.state not in (RESULTS_READY, DISPATCHED, RUNNING):
                raise ProtocolError("bad_state", f"job {job.job_id} is {job.state}; results can only be received from a dispatched attempt", ref=msg.ref)
            await self._finish(job, SUCCEEDED, f"results of attempt {job.attempt} received from {worker_id}")
        return job

    async def _results_in_hand(self, client: PeerEntry, job: QueuedJob, msg: ClientReport) -> QueuedJob:
        """The client holds the verified results of an attempt the coordinator had given up
        on (the worker's ``succeeded`` never arrived, so the job was requeued, maybe already
        dispatched again). The client's receipt is the source of truth: the job ends
        ``succeeded`` now, with no second training and nothing more for the client to
        install; a later attempt's worker is fenced off (its next report is refused)."""
        delivered_by = job.attempt_workers.get(msg.attempt, "an earlier worker")
        self._audit("client_report", client.peer_id, room_id=job.room_id, subject=job.job_id,
                    detail={"attempt": msg.attempt, "outcome": msg.outcome, "worker": delivered_by, "current_attempt": job.attempt, "state": job.state})
        log.warning("job %s: client %s holds the results of attempt %d (job was %s at attempt %d); ending it succeeded",
                    job.job_id, client.peer_id, msg.attempt, job.state, job.attempt)
        self._release(job)  # frees a later attempt's worker; the record names the attempt that delivered
        job.attempt, job.worker_id = msg.attempt, job.attempt_workers.get(msg.attempt)
        await self._finish(job, SUCCEEDED, f"results of attempt {msg.attempt} received from {delivered_by}")
        return job

    async def _late_auth_failure(self, client: PeerEntry, job: QueuedJob, msg: ClientReport) -> QueuedJob:
        """``auth_failed`` for an attempt that already ended (the worker gave the dispatch up
        first, say): ban the worker that held it, and take the job back if it holds it again."""
        worker_id = job.attempt_workers[msg.attempt]
        self._audit("client_report", client.peer_id, room_id=job.room_id, subject=job.job_id, detail={"attempt": msg.attempt, "outcome": msg.outcome, "worker": worker_id, "late": True})
        if worker_id not in job.banned:
            job.banned.append(worker_id)
            await self.store.save_job(job)
        log.warning("job %s: client %s says worker %s failed authentication on attempt %d; it gets this job no more", job.job_id, client.peer_id, worker_id, msg.attempt)
        if job.worker_id == worker_id and job.active:
            await self._requeue(job, f"worker {worker_id} failed the client's room-secret check on an earlier attempt")
        return job

    # --- worker side ---------------------------------------------------------------------

    def renew(self, worker: PeerEntry) -> None:
        """A sign of life from ``worker``: extend the lease of the job it holds."""
        job_id = self._held.get((worker.room_id, worker.peer_id))
        if job_id is None:
            return
        job = self.jobs.get(job_id)
        if job is None or not job.active:
            return
        now = self.clock.time()
        job.lease_expires_at = now + self.lease_seconds
        if now - self._persisted_lease.get(job_id, 0.0) > self.lease_seconds / 4:
            self._persisted_lease[job_id] = now
            self._writes.spawn(self._save_quietly(job), name=f"save-lease-{job_id}")

    async def flush(self) -> None:
        """Wait for lease writes still in flight (before the store closes)."""
        await self._writes.wait()

    async def _save_quietly(self, job: QueuedJob) -> None:
        try:
            await self.store.save_job(job)
        except Exception:  # noqa: BLE001 - a lease write failing must not end the loop
            log.exception("saving job %s failed", job.job_id)

    async def worker_registered(self, worker: PeerEntry) -> None:
        """A worker (re)joined. If it comes back ``available`` while holding a job, its
        old process is gone (restart, not a blip): the job is requeued at once."""
        job_id = self._held.get((worker.room_id, worker.peer_id))
        job = self.jobs.get(job_id) if job_id else None
        if job is not None and job.active and worker.status == "available":
            await self._requeue(job, f"worker {worker.peer_id} restarted without the job")
        elif job is not None and job.state == DISPATCHED and worker.status in ("reserved", "busy"):
            # It holds the dispatch (a coordinator restart forgot its `accepted`): the lease watches it now.
            self._dispatched_at.pop(job.job_id, None)
        await self.dispatch(worker.room_id)

    async def report(self, worker: PeerEntry, msg: JobReport) -> QueuedJob:
        job = self.jobs.get(msg.job_id)
        if job is None:
            done = await self.store.get_job(msg.job_id)
            if done is not None and self._repeated_success(done, worker, msg):
                return done
            if done is not None and done.room_id == worker.room_id and msg.attempt < done.attempt:
                raise ProtocolError("stale_attempt", f"attempt {msg.attempt} of job {msg.job_id} is stale (current attempt {done.attempt}); stop it", ref=msg.ref)
            raise ProtocolError("unknown_job", f"job {msg.job_id[:64]!r} is not running here (finished or cancelled); stop it", ref=msg.ref)
        if job.room_id != worker.room_id:
            raise ProtocolError("unknown_job", f"no job {msg.job_id[:64]!r} in this room", ref=msg.ref)
        if self._repeated_success(job, worker, msg):
            return job
        if msg.attempt != job.attempt or not job.active:
            log.warning("refused stale report job=%s attempt=%d (current %d) from %s", job.job_id, msg.attempt, job.attempt, worker.peer_id)
            self._audit("stale_report", worker.peer_id, room_id=job.room_id, subject=job.job_id, detail={"attempt": msg.attempt, "current": job.attempt, "state": msg.state})
            raise ProtocolError("stale_attempt", f"attempt {msg.attempt} of job {job.job_id} is stale (current attempt {job.attempt}); stop it", ref=msg.ref)
        if job.worker_id != worker.peer_id:
            raise ProtocolError("not_assigned", f"job {job.job_id} is not assigned to {worker.peer_id}", ref=msg.ref)
        self.renew(worker)
        state = msg.state
        if state in ("progress", "checkpoint") and job.state == DISPATCHED:
            # Its `running` report was lost in a coordinator outage; these say it runs.
            self._dispatched_at.pop(job.job_id, None)
            await self._set_state(job, RUNNING, f"running on {worker.peer_id}")
        if state == "accepted":
            self._dispatched_at.pop(job.job_id, None)
        elif state == RUNNING:
            self._dispatched_at.pop(job.job_id, None)
            await self._set_state(job, RUNNING, msg.message or f"running on {worker.peer_id}")
        elif state == "progress":
            self._progress[job.job_id] = msg.detail
        elif state == "checkpoint":
            if len(json.dumps(msg.detail)) > MAX_CHECKPOINT_INFO:
                raise ProtocolError("oversize", f"checkpoint detail exceeds {MAX_CHECKPOINT_INFO} bytes; send only model, epoch, sha256, size", ref=msg.ref)
            job.checkpoint = dict(msg.detail)
            await self.store.save_job(job)
        elif state == SUCCEEDED:
            if job.spec.get("kind") == "train":
                await self._results_ready(job, msg.message or f"finished on {worker.peer_id}; results wait there until the client confirms them")
            else:
                await self._finish(job, SUCCEEDED, msg.message or f"finished on {worker.peer_id}")
        elif state == FAILED:
            if msg.failure == "job" and not job.retry_job_errors:
                job.failure = "job"
                await self._finish(job, FAILED, msg.message or "the job failed")
            else:
                await self._requeue(job, msg.message or f"attempt failed on {worker.peer_id}", failure=msg.failure or "infra")
        elif state == "rejected":
            await self._requeue(job, msg.message or f"{worker.peer_id} rejected the job")
        return job

    @staticmethod
    def _repeated_success(job: QueuedJob, worker: PeerEntry, msg: JobReport) -> bool:
        """A ``succeeded`` the coordinator already applied, sent again because the reply
        was lost: answering ``stale_attempt`` would make the worker drop the results."""
        return (
            msg.state == SUCCEEDED and job.room_id == worker.room_id and job.worker_id == worker.peer_id
            and msg.attempt == job.attempt and job.state in (RESULTS_READY, SUCCEEDED)
        )

    # --- transitions ----------------------------------------------------------------------

    async def _results_ready(self, job: QueuedJob, message: str) -> None:
        """The worker is done and free; the job stays open (and ``worker_id`` names where
        the results wait) until the client confirms with ``results_received``."""
        self._release(job)
        self._progress.pop(job.job_id, None)
        job.lease_expires_at = None
        await self._set_state(job, RESULTS_READY, message)
        await self.dispatch(job.room_id)

    async def _set_state(self, job: QueuedJob, state: str, message: str) -> None:
        if job.state != state:
            log.info("job state room=%s job=%s attempt=%d %s -> %s", job.room_id, job.job_id, job.attempt, job.state, state)
            self._audit("job_state", job.worker_id or "coordinator", room_id=job.room_id, subject=job.job_id, detail={"from": job.state, "to": state, "attempt": job.attempt, "message": message})
        job.state = state
        job.message = message
        await self.store.save_job(job)
        self._notify(job)

    def _release(self, job: QueuedJob) -> None:
        if job.worker_id and self._held.get((job.room_id, job.worker_id)) == job.job_id:
            del self._held[(job.room_id, job.worker_id)]
            worker = self.presence.get(job.room_id, job.worker_id)
            if worker is not None and worker.status == "reserved" and worker.reported_status not in ("reserved", ""):
                # The coordinator reserved it at dispatch and the worker never moved on.
                status = worker.reported_status
                if status == "available" and self.drained(job.room_id, job.worker_id):
                    status = "draining"
                worker.update(status=status)
        self._dispatched_at.pop(job.job_id, None)
        self._persisted_lease.pop(job.job_id, None)

    async def _finish(self, job: QueuedJob, state: str, message: str) -> None:
        self._release(job)
        self.jobs.pop(job.job_id, None)
        self._sent_position.pop(job.job_id, None)
        self._progress.pop(job.job_id, None)
        job.lease_expires_at = None
        await self._set_state(job, state, message)
        await self.dispatch(job.room_id)

    async def _requeue(self, job: QueuedJob, reason: str, *, failure: str = "infra") -> None:
        """Give the job back to the queue (keeping its place), or fail it when it has
        used up its retries."""
        self._release(job)
        if job.worker_id and job.worker_id not in job.excluded:
            job.excluded.append(job.worker_id)
        job.retries += 1
        job.failure = failure
        job.lease_expires_at = None
        self._audit("job_requeue", "coordinator", room_id=job.room_id, subject=job.job_id, detail={"attempt": job.attempt, "worker": job.worker_id, "reason": reason, "retries": job.retries})
        if job.retries > job.max_retries:
            log.warning("job %s gave up after %d failed attempt(s): %s", job.job_id, job.retries, reason)
            await self._finish(job, FAILED, f"gave up after {job.retries} failed attempt(s); last: {reason}")
            return
        log.warning("job %s requeued (retry %d/%d): %s", job.job_id, job.retries, job.max_retries, reason)
        job.worker_id = None
        await self._set_state(job, QUEUED, f"requeued: {reason}")
        await self.dispatch(job.room_id)

    # --- dispatch and leases --------------------------------------------------------------

    def _candidates(self, job: QueuedJob) -> list[PeerEntry]:
        matching = [
            e for e in self.presence.find(job.room_id, role="worker")
            if requirements_met(e, job.requirements) and not self.drained(e.room_id, e.peer_id)
            and self.may_take_jobs(e) and e.peer_id not in job.banned
        ]
        fresh = [e for e in matching if e.peer_id not in job.excluded]
        pool = fresh or matching
        return [e for e in pool if e.status == "available" and (e.room_id, e.peer_id) not in self._held]

    async def dispatch(self, room_id: str) -> int:
        """Hand queued jobs of ``room_id`` to free matching workers; return how many went."""
        async with self._lock:
            sent = 0
            for job in self._queued(room_id):
                if job.state != QUEUED or self.jobs.get(job.job_id) is not job:
                    continue  # changed while an earlier dispatch was being saved
                if self.presence.get(room_id, job.client_id) is None:
                    continue  # the package is on the client: wait for it to come back
                workers = self._candidates(job)
                if not workers:
                    continue
                worker = min(workers, key=rank)
                job.attempt += 1
                job.worker_id = worker.peer_id
                job.attempt_workers[job.attempt] = worker.peer_id
                job.lease_expires_at = self.clock.time() + self.lease_seconds
                self._held[(room_id, worker.peer_id)] = job.job_id
                self._dispatched_at[job.job_id] = self.clock.monotonic()
                self._sent_position.pop(job.job_id, None)
                worker.update(status="reserved")
                log.info("job dispatched room=%s job=%s attempt=%d worker=%s", room_id, job.job_id, job.attempt, worker.peer_id)
                self._audit("dispatch", "coordinator", room_id=room_id, subject=job.job_id, detail={"attempt": job.attempt, "worker": worker.peer_id})
                worker.link.send(
                    JobDispatch(job_id=job.job_id, attempt=job.attempt, client_id=job.client_id, spec=job.spec, lease_seconds=self.lease_seconds, checkpoint=job.checkpoint)
                )
                await self._set_state(job, DISPATCHED, f"dispatched to {worker.peer_id} (attempt {job.attempt})")
                sent += 1
            self._push_positions(room_id)
            return sent

    async def tick(self) -> None:
        """Requeue jobs whose worker went silent past lease + grace, or never accepted."""
        now, mono = self.clock.time(), self.clock.monotonic()
        limit = self.lease_seconds + self.reconnect_grace
        for job in list(self.jobs.values()):
            if not job.active:
                continue
            if job.lease_expires_at is not None and now > job.lease_expires_at + self.reconnect_grace:
                await self._requeue(job, f"worker {job.worker_id} went silent (lease expired {now - job.lease_expires_at:.0f}s ago)")
            elif job.state == DISPATCHED and job.job_id in self._dispatched_at and mono - self._dispatched_at[job.job_id] > limit:
                await self._requeue(job, f"worker {job.worker_id} did not accept the job within {limit:g}s")
        for room_id in {j.room_id for j in self.jobs.values() if j.state == QUEUED}:
            await self.dispatch(room_id)

    def snapshot_progress(self, job_id: str) -> dict[str, Any] | None:
        return self._progress.get(job_id)


__all__ = ["JobQueue", "requirements_met"]
