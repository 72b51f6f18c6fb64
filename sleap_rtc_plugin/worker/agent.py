"""The networked worker: coordinator presence, offers, authenticated links, jobs.

One :class:`Worker` registers in a room with its capabilities, answers WebRTC offers
relayed by the coordinator, authenticates each client with the room secret, runs
one job at a time through the status machine, forwards progress to whichever
client links follow the job, and keeps results in the outbox until a client
acknowledges them. A client that goes away does not stop its job: it can come
back with ``attach`` and still get the results.

Queued jobs (docs/queue.md) arrive as a coordinator ``job_dispatch``: the worker
reserves itself for that client, reports each step of the attempt (``accepted``,
``running``, ``progress``, ``checkpoint``, ``succeeded``/``failed``), relays
``last.ckpt`` to the client every ``checkpoint_interval`` seconds so a later attempt
can resume, and stops the job the moment the coordinator answers ``stale_attempt``:
the attempt that replaced it owns the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..config import Settings, user_data_dir
from ..errors import UserError
from ..coordinator.client import CoordinatorClient, CoordinatorError, create_room
from ..peer import secrets
from ..peer.fastpath import FastPaths
from ..peer.errors import PeerLinkError, TransferError
from ..peer.link import PeerLink
from ..protocol.coordinator import WORKER_TOKEN_PREFIX, Relay
from ..protocol.names import child_path
from ..protocol.peer import Attach, Control, JobResult, JobStatus, JobSubmit, Log, PeerError, Progress, ResultAck, ResultFile, ResultReleased
from ..protocol.queue import CheckpointNotice, JobDispatch
from .checkpoints import CheckpointWatcher, Snapshot as CheckpointSnapshot
from .resume_plan import plan_resume
from ..protocol.session_string import SessionString
from .engine import JobEngine, JobFailedError
from .private import private_dir
from . import link_server
from .gpu import capabilities
from .outbox import Outbox
from .owners import MIN_OWNER_CHARS, OWNER_KEY, not_owner, owner_hash, owner_matches, owner_required
from .runner import hydra_value
from .state import Snapshot, WorkerBusy, WorkerState

log = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    server_url: str | None = None
    room_id: str | None = None
    token: str | None = None
    room_secret: str | None = None
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    data_dir: Path = field(default_factory=lambda: user_data_dir() / "worker")
    status_port: int | None = 8766
    ice_servers: list[Any] = field(default_factory=list)
    ice_loopback: bool = False
    cancel_grace: float = 10.0
    max_file_bytes: int = 20 * 1024**3
    max_unpacked_bytes: int = 20 * 1024**3
    cache_max_bytes: int = 10 * 1024**3
    fastpaths: FastPaths = field(default_factory=FastPaths)
    embedded_host: str = "127.0.0.1"
    embedded_port: int = 8765
    embedded_db: str | None = None
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 30.0
    checkpoint_interval: float = 60.0
    capabilities_refresh: float = 60.0
    report_patience: float = 300.0
    preauth_timeout: float = link_server.DEFAULT_PREAUTH_TIMEOUT
    insecure_no_secret: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, *, labels: dict[str, str] | None = None, room_secret: str | None = None) -> "WorkerOptions":
        data_dir = settings.get("worker.data_dir")
        return cls(
            server_url=settings.get("signaling_ws"),
            room_id=settings.get("room_id"),
            token=settings.get("token"),
            room_secret=room_secret,
            name=settings.get("worker.name"),
            labels=dict(labels if labels is not None else settings.get("worker.labels", {})),
            data_dir=Path(data_dir).expanduser() if data_dir else user_data_dir() / "worker",
            status_port=settings.get("worker.status_port"),
            ice_servers=list(settings.get("ice_servers", [])),
            ice_loopback=bool(settings.get("ice_loopback")),
            cancel_grace=float(settings.get("worker.cancel_grace", 10.0)),
            max_file_bytes=int(settings.get("transfer.max_file_mb", 20480)) * 1024 * 1024,
            max_unpacked_bytes=int(settings.get("worker.max_unpacked_mb", 20480)) * 1024 * 1024,
            cache_max_bytes=int(settings.get("transfer.cache_mb", 10240)) * 1024 * 1024,
            fastpaths=FastPaths.from_settings(settings),
            embedded_host=settings.get("server.host", "127.0.0.1"),
            embedded_port=int(settings.get("server.port", 8765)),
            embedded_db=settings.get("server.db"),
            heartbeat_interval=float(settings.get("server.heartbeat_interval", 10.0)),
            heartbeat_timeout=float(settings.get("server.heartbeat_timeout", 30.0)),
            checkpoint_interval=float(settings.get("worker.checkpoint_interval", 60.0)),
            preauth_timeout=float(settings.get("worker.preauth_timeout", link_server.DEFAULT_PREAUTH_TIMEOUT)),
            insecure_no_secret=bool(settings.get("worker.insecure_no_secret", False)),
        )


#: Coordinator answers that mean "this attempt is no longer yours: stop it".
STOP_CODES = frozenset({"stale_attempt", "unknown_job", "not_assigned"})


@dataclass
class _Resume:
    path: Path
    model: str
    epoch: int | None
    sha256: str


@dataclass
class _Dispatch:
    """One attempt of a queued job, from ``job_dispatch`` until it ends."""

    job_id: str
    attempt: int
    client_id: str
    lease_seconds: float
    resume: _Resume | None = None
    #: Every handed-over checkpoint by model head (a top-down job hands over one per model).
    resumes: dict[str, _Resume] = field(default_factory=dict)
    expiry: asyncio.Task | None = None
    last_progress_report: float = 0.0


@dataclass
class _Job:
    job_id: str
    kind: str
    client_id: str
    started_at: float = field(default_factory=time.time)
    state: str = "running"
    last_progress: dict[str, Any] = field(default_factory=dict)
    followers: set[PeerLink] = field(default_factory=set)
    engine: JobEngine | None = None
    task: asyncio.Task | None = None
    message: str = ""
    dispatch: _Dispatch | None = None
    superseded: bool = False
    owner_sha256: str | None = None


class Worker:
    def __init__(self, options: WorkerOptions, *, probe: Callable[[], dict[str, Any]] = capabilities):
        """``probe`` reports GPUs and versions; tests replace it at the NVML boundary."""
        self.options = options
        self._probe = probe
        self.name = options.name or socket.gethostname()
        self.data_dir = Path(options.data_dir)
        self.state = WorkerState(self.name)
        self.outbox = Outbox(self.data_dir)
        self._reservation: tuple[str, str] | None = None
        self._published_status: str | None = None
        self.coordinator: CoordinatorClient | None = None
        self.embedded = None
        self.server_url: str | None = options.server_url
        self.room_id: str | None = options.room_id
        self.token: str | None = options.token
        self.secret: bytes | None = None
        self.job: _Job | None = None
        self.jobs: dict[str, _Job] = {}
        self.last_error: str | None = None
        self.started_at = time.time()
        self.status_server = None
        self.capabilities: dict[str, Any] = {}
        self._links: set[PeerLink] = set()
        self._tasks: set[asyncio.Task] = set()
        self._watchdog = None
        self._stopping = False
        self._dispatches: dict[str, _Dispatch] = {}

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        joining = bool(self.server_url and self.room_id and self.token)
        if joining:
            self._require_secret()
        private_dir(self.data_dir, "jobs", "incoming", "cache", "partial")
        if not self.server_url:
            from ..coordinator.server import CoordinatorServer

            db = self.options.embedded_db or str(self.data_dir / "coordinator.sqlite3")
            self.embedded = CoordinatorServer(
                self.options.embedded_host, self.options.embedded_port, db,
                heartbeat_interval=self.options.heartbeat_interval, heartbeat_timeout=self.options.heartbeat_timeout,
                allow_room_token_workers=True,  # its only worker is this one, the room's creator
            )
            await self.embedded.start()
            self.server_url = self.embedded.url
            log.info("no coordinator configured: started an embedded one at %s", self.server_url)
        if not self.room_id or not self.token:
            self.room_id, self.token, _ = await create_room(self.server_url)
            log.info("created room %s", self.room_id)
        if not joining:
            self.secret = secrets.lookup_secret(self.room_id, explicit=self.options.room_secret) or await asyncio.to_thread(self._new_secret)
        self.capabilities = await asyncio.to_thread(self._probe)
        self.coordinator = CoordinatorClient(
            self.server_url, room_id=self.room_id, token=self.token, role="worker",
            metadata=self._metadata(), status=self.state.status.value,
        )
        self.coordinator.add_relay_handler(self._on_relay)
        self.coordinator.add_push_handler(self._on_push)
        self.state.add_observer(self._on_status_change)
        await self.coordinator.start()
        log.info("registered in room %s as %s (%s)", self.room_id, self.coordinator.peer_id, self.capabilities.get("accelerator"))
        await self._start_service_hooks()
        self._spawn(self._refresh_capabilities())

    async def _refresh_capabilities(self) -> None:
        """Re-probe GPUs now and then: free memory is what discovery filters and auto-select use."""
        while not self._stopping:
            await asyncio.sleep(self.options.capabilities_refresh)
            fresh = await asyncio.to_thread(self._probe)
            if fresh != self.capabilities and self.coordinator is not None:
                self.capabilities = fresh
                await self.coordinator.update(metadata=self._metadata())
                log.info("capabilities refreshed: %s", ", ".join(f"{g.get('name')} {g.get('memory_free_mb')} MB free" for g in fresh.get("gpus", [])) or "cpu")

    async def _start_service_hooks(self) -> None:
        from ..service import sdnotify
        from ..service.status_server import StatusServer

        if self.options.status_port is not None:
            self.status_server = StatusServer(self.snapshot, port=self.options.status_port)
            try:
                await self.status_server.start()
            except OSError as exc:
                log.warning("status endpoint not started (port %s: %s); `sleap-rtc-service status` will not see live state", self.options.status_port, exc.strerror)
                self.status_server = None
        sdnotify.ready(f"registered in room {self.room_id} as {self.peer_id}")
        self._watchdog = sdnotify.WatchdogPinger(lambda: bool(self.coordinator and self.coordinator.connected))
        self._watchdog.start()

    async def stop(self) -> None:
        self._stopping = True
        from ..service import sdnotify

        sdnotify.stopping()
        if self.job is not None and self.job.engine is not None and self.job.task is not None and not self.job.task.done():
            log.info("stopping job %s before exit", self.job.job_id)
            await self.job.engine.cancel(self.options.cancel_grace)
            await asyncio.gather(self.job.task, return_exceptions=True)
        for link in list(self._links):
            await link.close("worker shutting down")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._watchdog is not None:
            await self._watchdog.stop()
        if self.status_server is not None:
            await self.status_server.stop()
        if self.coordinator is not None:
            await self.coordinator.close()
        if self.embedded is not None:
            await self.embedded.stop()

    @property
    def peer_id(self) -> str | None:
        return self.coordinator.peer_id if self.coordinator else None

    def _require_secret(self) -> None:
        """Joining a room: its secret must be configured, or legacy mode chosen explicitly."""
        assert self.room_id
        self.secret = secrets.lookup_secret(self.room_id, explicit=self.options.room_secret)
        if self.secret is not None:
            return
        if not self.options.insecure_no_secret:
            raise UserError(
                f"room {self.room_id} has no room secret here: pass --room-secret, set {secrets.env_var_name(self.room_id)}, or run "
                f"`sleap-rtc room create-secret --room {self.room_id} --save` (or --insecure-no-secret to let any room member use this worker)"
            )
        log.warning("no room secret configured: accepting any client of room %s (legacy mode, --insecure-no-secret)", self.room_id)

    def _new_secret(self) -> bytes:
        """This worker made the room, so it makes the secret too; saved 0600, carried in the session string."""
        assert self.room_id
        value = secrets.create_secret(self.room_id)
        try:
            where = secrets.store_secret(self.room_id, value)
            log.info("created a room secret for room %s (saved to %s; it is in the session string)", self.room_id, where)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("created a room secret for room %s but could not save it (%s); it is in the session string", self.room_id, exc)
        return value.encode()

    @property
    def enrolled(self) -> bool:
        """Registered with a worker token: its credential is its own, never one to hand to clients."""
        return bool(self.token and self.token.startswith(WORKER_TOKEN_PREFIX))

    def session_string(self) -> str:
        """Everything a client needs: room, token, worker, coordinator and the room secret.

        An enrolled worker has no room token to give (and its worker token must never reach a
        client: it would let the holder take the worker's id), so it has no session string.
        """
        assert self.room_id and self.token and self.peer_id
        if self.enrolled:
            raise RuntimeError(f"worker {self.peer_id} is enrolled with a worker token: clients join room {self.room_id} with the room token")
        secret = self.secret.decode("utf-8", "replace") if self.secret else None
        return SessionString(self.room_id, self.token, self.peer_id, self.server_url, secret).encode()

    def banner(self, *, interactive: bool = True) -> str:
        from .banner import render

        return render(self, interactive=interactive)

    def _metadata(self) -> dict[str, Any]:
        return {**self.capabilities, "name": self.name, "labels": self.options.labels, "version": __version__}

    def snapshot(self) -> dict[str, Any]:
        """Live state for the local status endpoint (``sleap-rtc-service status``)."""
        job = self.job
        return {
            "coordinator": {"connected": bool(self.coordinator and self.coordinator.connected), "url": self.server_url},
            "room_id": self.room_id,
            "peer_id": self.peer_id,
            "name": self.name,
            "status": self.state.status.value,
            "job": None if job is None else {
                "id": job.job_id, "kind": job.kind, "state": job.state, "client": job.client_id, "started_at": job.started_at,
                "summary": job.engine.describe() if job.engine else "", "progress": job.last_progress,
            },
            "gpus": self.capabilities.get("gpus", []),
            "accelerator": self.capabilities.get("accelerator"),
            "outbox": [entry.job_id for entry in self.outbox.list()],
            "last_error": self.last_error,
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self.started_at,
        }

    def _on_status_change(self, snap: Snapshot) -> None:
        status = snap.status.value
        if self.coordinator is not None and not self._stopping and status != self._published_status:
            self._published_status = status
            self._spawn(self.coordinator.update(status=status))

    def _release(self, client: str, job_id: str) -> None:
        """Give up a reservation that never became a job (client left, bad package)."""
        if self._reservation == (client, job_id) and self.state.status.value == "reserved":
            self.state.unreserve(client)
        if self._reservation == (client, job_id):
            self._reservation = None

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.last_error = str(exc)
            log.error("background task failed: %s", exc, exc_info=exc)

    # -- queued jobs: dispatch, reports, fencing ----------------------------------
    def _on_push(self, msg) -> None:
        if isinstance(msg, JobDispatch):
            self._spawn(self._on_dispatch(msg))

    async def _on_dispatch(self, msg: JobDispatch) -> None:
        current = self._dispatches.get(msg.job_id)
        if current is not None and current.attempt >= msg.attempt:
            return
        try:
            self.state.reserve(msg.client_id)
        except WorkerBusy as exc:
            log.info("job %s attempt %d: rejecting the dispatch (%s)", msg.job_id, msg.attempt, exc)
            await self._report(msg.job_id, msg.attempt, "rejected", message=str(exc))
            return
        d = _Dispatch(msg.job_id, msg.attempt, msg.client_id, msg.lease_seconds)
        self._dispatches[msg.job_id] = d
        self._reservation = (msg.client_id, msg.job_id)
        log.info("job %s attempt %d dispatched by the coordinator; reserved for client %s", msg.job_id, msg.attempt, msg.client_id)
        if not await self._report(msg.job_id, msg.attempt, "accepted"):
            self._end_dispatch(d)
            self._release(msg.client_id, msg.job_id)
            return
        d.expiry = self._spawn(self._expire_dispatch(d, max(60.0, 4 * msg.lease_seconds)))

    async def _expire_dispatch(self, d: _Dispatch, timeout: float) -> None:
        """A client that never submits must not hold the worker forever."""
        await asyncio.sleep(timeout)
        if self._dispatches.get(d.job_id) is d and self._reservation == (d.client_id, d.job_id):
            d.expiry = None
            await self._abandon_dispatch(d, f"client {d.client_id} did not submit job {d.job_id} within {timeout:g}s of the dispatch")

    def _end_dispatch(self, d: _Dispatch) -> None:
        if self._dispatches.get(d.job_id) is d:
            del self._dispatches[d.job_id]
        if d.expiry is not None and d.expiry is not asyncio.current_task():
            d.expiry.cancel()
        d.expiry = None

    async def _abandon_dispatch(self, d: _Dispatch, reason: str) -> None:
        """The attempt never became a running job: free the worker and let the
        coordinator requeue it (an infrastructure failure, not the job's)."""
        self._end_dispatch(d)
        self._release(d.client_id, d.job_id)
        log.warning("job %s attempt %d abandoned: %s", d.job_id, d.attempt, reason)
        await self._report(d.job_id, d.attempt, "failed", failure="infra", message=reason)

    async def _report(self, job_id: str, attempt: int, state: str, *, failure: str | None = None, message: str = "",
                      detail: dict[str, Any] | None = None, patience: float = 0.0) -> bool:
        """Tell the coordinator about an attempt. ``False``: the attempt is no longer this
        worker's (requeued, cancelled): stop it. Final reports wait out a coordinator
        outage for up to ``patience`` seconds, since the outcome must not be lost."""
        if self.coordinator is None:
            return True
        deadline = time.monotonic() + patience
        while True:
            try:
                await self.coordinator.report(job_id, attempt, state, failure=failure, message=message, detail=detail)
                return True
            except CoordinatorError as exc:
                if exc.code in STOP_CODES:
                    log.warning("job %s attempt %d: coordinator refused the %s report (%s); this attempt must stop", job_id, attempt, state, exc.code)
                    return False
                if exc.code in ("disconnected", "timeout") and time.monotonic() < deadline and not self._stopping:
                    await asyncio.sleep(0.5)
                    continue
                log.warning("job %s attempt %d: %s report not delivered: %s", job_id, attempt, state, exc)
                return True

    async def _report_job(self, job: _Job, state: str, **kw: Any) -> None:
        if job.dispatch is None or job.superseded:
            return
        if not await self._report(job.job_id, job.dispatch.attempt, state, **kw):
            await self._supersede(job)

    async def _supersede(self, job: _Job) -> None:
        """Fencing: a newer attempt owns this job now, so this one ends without results."""
        if job.superseded:
            return
        job.superseded = True
        log.warning("job %s: attempt %s is stale; stopping it", job.job_id, job.dispatch.attempt if job.dispatch else "?")
        if job.engine is not None and job.task is not None and not job.task.done():
            await job.engine.cancel(self.options.cancel_grace)

    async def _final_report(self, job: _Job, failure: str | None) -> None:
        d = job.dispatch
        assert d is not None
        patience = self.options.report_patience
        if job.state == "succeeded":
            ok = await self._report(job.job_id, d.attempt, "succeeded", message=f"{job.kind} job finished on {self.name}", patience=patience)
        else:
            ok = await self._report(job.job_id, d.attempt, "failed", failure=failure or "infra", message=job.message or job.state, patience=patience)
        if not ok:
            job.superseded = True

    async def _relay_checkpoints(self, job: _Job, stop: asyncio.Event) -> None:
        """Every ``checkpoint_interval`` s, send a new ``last.ckpt`` to the job's client
        (notice, then a hashed file transfer) and report its metadata. Stops between
        two transfers, never inside one, so results never interleave with a checkpoint."""
        engine, d = job.engine, job.dispatch
        assert engine is not None and d is not None

        async def send(snap: CheckpointSnapshot) -> None:
            model = engine.model_for_run_dir(snap.source.parent) or snap.source.parent.name
            epoch = engine.completed_epochs.get(model, engine.completed_epoch)
            notice = CheckpointNotice(job_id=job.job_id, attempt=d.attempt, model=model, sha256=snap.sha256, size=snap.size, epoch=epoch)
            sent = 0
            for follower in list(job.followers):
                if follower.closed.is_set():
                    continue
                try:
                    await follower.send(notice)
                    await follower.send_file(snap.path, name=f"checkpoint-{model}.ckpt")
                    sent += 1
                except PeerLinkError as exc:
                    log.warning("job %s: relaying a checkpoint failed: %s", job.job_id, exc)
            if sent:
                log.info("job %s: relayed checkpoint of %s (epoch %s, %.1f MB)", job.job_id, model, epoch, snap.size / 1e6)
                await self._report_job(job, "checkpoint", detail={"model": model, "epoch": epoch, "sha256": snap.sha256, "size": snap.size})

        watcher = CheckpointWatcher(engine.output_dir, engine.job_dir / "checkpoint-staging", self.options.checkpoint_interval, send)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.options.checkpoint_interval)
            except TimeoutError:
                pass
            if stop.is_set() or job.superseded:
                return
            try:
                await watcher.poll_once()
            except Exception as exc:  # noqa: BLE001 - a failed relay must not stop training
                log.warning("job %s: checkpoint relay failed (retrying next interval): %s", job.job_id, exc)

    async def _receive_resume(self, link: PeerLink, client: str, msg: CheckpointNotice) -> None:
        """Before submitting a later attempt, the client hands over the newest relayed
        checkpoint; training resumes from it instead of from scratch."""
        d = self._dispatches.get(msg.job_id)
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
        d.resume = d.resumes[msg.model] = _Resume(Path(got.path), msg.model, msg.epoch, msg.sha256)
        log.info("job %s attempt %d: received checkpoint of %s (epoch %s) to resume from", d.job_id, d.attempt, msg.model, msg.epoch)

    # -- offers: see link_server.py (nothing before authentication touches disk or reserves) --
    def _on_relay(self, relay: Relay) -> None:
        if relay.kind == "offer" and relay.source:
            self._spawn(link_server.handle_offer(self, relay))

    # -- one authenticated link ---------------------------------------------------
    async def _serve(self, link: PeerLink, client: str, intent: str, job_id: str, incoming: Path) -> None:
        while not link.closed.is_set():
            try:
                msg = await link.recv()
            except PeerLinkError:
                break
            if isinstance(msg, JobSubmit):
                await self._submit(link, client, msg, incoming)
            elif isinstance(msg, Attach):
                await self._attach(link, msg)
            elif isinstance(msg, Control):
                await self._control(link, msg)
            elif isinstance(msg, CheckpointNotice):
                await self._receive_resume(link, client, msg)
            elif isinstance(msg, ResultAck):
                await self._ack(link, client, msg)
        for job in self.jobs.values():
            job.followers.discard(link)

    async def _submit(self, link: PeerLink, client: str, msg: JobSubmit, incoming: Path) -> None:
        if self._reservation != (client, msg.job_id):
            await link.send(PeerError(code="not_reserved", message="submit the job on the connection that reserved this worker", job_id=msg.job_id))
            return
        if len(msg.owner) < MIN_OWNER_CHARS:
            await link.send(owner_required(msg.job_id))
            return
        if msg.job_id in self.jobs or await asyncio.to_thread(self.outbox.get, msg.job_id) is not None:
            self._release(client, msg.job_id)
            await link.send(PeerError(code="job_exists", message=f"worker {self.name} already holds a job {msg.job_id}; submit under a new job id", job_id=msg.job_id))
            return
        by_sha: dict[str, Path] = {}
        wanted = {msg.package_sha256, *msg.inputs.values()}
        while not wanted <= by_sha.keys():
            try:
                received = await link.receive_file(timeout=10)
            except (PeerLinkError, asyncio.TimeoutError, TimeoutError):
                if by_sha:
                    break
                await link.send(PeerError(code="no_package", message="the package did not arrive before job_submit; send it first", job_id=msg.job_id))
                return
            if received.sha256 not in wanted:
                break  # not what the submit announces: answer now rather than wait for more files
            by_sha[received.sha256] = Path(received.path)
        if msg.package_sha256 not in by_sha:
            await link.send(PeerError(code="package_mismatch", message="the received package does not match the announced hash; submit again", job_id=msg.job_id))
            return
        missing = sorted(name for name, sha in msg.inputs.items() if sha not in by_sha)
        if missing:
            await link.send(PeerError(code="no_package", message=f"input(s) {', '.join(missing)} did not arrive before job_submit; submit again", job_id=msg.job_id))
            return
        job_dir = child_path(self.data_dir / "jobs", msg.job_id)
        inputs = {name: by_sha[sha] for name, sha in msg.inputs.items()}
        engine = JobEngine(msg.job_id, by_sha[msg.package_sha256], job_dir, kind=msg.kind, options=msg.options, cancel_grace=self.options.cancel_grace,
                           inputs=inputs, max_unpacked_bytes=self.options.max_unpacked_bytes)
        dispatch = self._dispatches.get(msg.job_id)
        try:
            spec = await engine.prepare()
        except JobFailedError as exc:
            self._release(client, msg.job_id)
            log.warning("job %s rejected: %s", msg.job_id, exc)
            if dispatch is not None:
                self._end_dispatch(dispatch)
                await self._report(msg.job_id, dispatch.attempt, "failed", failure="job" if exc.own_error else "infra", message=str(exc))
            await link.send(JobStatus(job_id=msg.job_id, state="failed", message=str(exc)))
            return
        if dispatch is not None and msg.kind == "train":
            self._plan_resume(engine, spec, dispatch)
        job = _Job(msg.job_id, msg.kind, client, engine=engine, followers={link}, dispatch=dispatch, owner_sha256=owner_hash(msg.owner))
        self.jobs[msg.job_id] = job
        self.job = job
        self.state.start(engine, msg.kind, client)
        self._reservation = None
        if dispatch is not None and dispatch.expiry is not None:
            dispatch.expiry.cancel()
            dispatch.expiry = None
        detail = {}
        if dispatch is not None:
            detail = {"attempt": dispatch.attempt, "resumed_from": None if dispatch.resume is None else {"model": dispatch.resume.model, "epoch": dispatch.resume.epoch}}
        await link.send(JobStatus(job_id=msg.job_id, state="running", message=f"{msg.kind} job started on {self.name}", detail=detail))
        job.task = self._spawn(self._run(job))
        if dispatch is not None:
            self._spawn(self._report_job(job, "running", message=f"running on {self.name}", detail=detail))

    def _plan_resume(self, engine: JobEngine, spec, dispatch: _Dispatch) -> None:
        """Queued training writes ``last.ckpt`` every epoch (what the relay sends) and
        resumes each model from the client's copy when it has one (:mod:`.resume_plan`)."""
        resumed = plan_resume(engine, spec.models, dispatch.resumes, dispatch.attempt)
        if dispatch.resume is not None and dispatch.resume.model not in resumed:
            dispatch.resume = None

    async def _broadcast(self, job: _Job, msg) -> None:
        for follower in list(job.followers):
            if follower.closed.is_set():
                job.followers.discard(follower)
                continue
            try:
                await follower.send(msg)
            except PeerLinkError:
                job.followers.discard(follower)

    async def _run(self, job: _Job) -> None:
        assert job.engine is not None
        log.info("job %s (%s) running for %s", job.job_id, job.kind, job.client_id)
        d = job.dispatch

        async def on_event(event: dict[str, Any]) -> None:
            if event.get("kind") == "log":
                await self._broadcast(job, Log(job_id=job.job_id, line=str(event.get("line", ""))))
                return
            job.last_progress = event
            await self._broadcast(job, Progress(job_id=job.job_id, event=event))
            if d is not None and event.get("event") == "epoch_end" and time.monotonic() - d.last_progress_report >= 1.0:
                d.last_progress_report = time.monotonic()
                self._spawn(self._report_job(job, "progress", detail={"model": event.get("model"), "epoch": event.get("epoch")}))

        stop_relay = asyncio.Event()
        relay = None
        if d is not None and job.kind == "train" and self.options.checkpoint_interval > 0:
            relay = self._spawn(self._relay_checkpoints(job, stop_relay))
        entry = None
        failure: str | None = None
        try:
            output = await job.engine.run(on_event)
            stop_relay.set()
            if relay is not None:
                await asyncio.gather(relay, return_exceptions=True)
            entry = await asyncio.to_thread(
                self.outbox.put, job.job_id, job_type=job.kind, run_dirs=output.run_dirs, files=output.files,
                metadata={"client": job.client_id, "worker": self.name, "attempt": d.attempt if d else None, OWNER_KEY: job.owner_sha256},
            )
            job.state = "succeeded"
            log.info("job %s succeeded; %d result file(s) in the outbox", job.job_id, len(entry.files))
        except JobFailedError as exc:
            job.state = "cancelled" if exc.cancelled else "failed"
            job.message = str(exc)
            # A worker shutting down cancels its job: that is not the job's fault.
            failure = "infra" if (exc.cancelled and self._stopping) or not exc.own_error else "job"
            self.last_error = f"job {job.job_id}: {exc}"
            log.error("job %s %s: %s", job.job_id, job.state, exc)
        except Exception as exc:  # noqa: BLE001 - disk full, outbox write: the worker's failure, not the job's
            job.state, job.message, failure = "failed", f"worker error: {exc}", "infra"
            self.last_error = f"job {job.job_id}: {exc}"
            log.exception("job %s failed on the worker side", job.job_id)
        finally:
            stop_relay.set()
            if relay is not None:
                await asyncio.gather(relay, return_exceptions=True)
            try:
                if d is not None and not job.superseded:
                    await self._final_report(job, failure)
            finally:
                if d is not None:
                    self._end_dispatch(d)
                self.state.finish()
                if self.job is job:
                    self.job = None
        if job.superseded:
            if entry is not None:
                await asyncio.to_thread(self.outbox.ack, job.job_id)
            await self._broadcast(job, JobStatus(job_id=job.job_id, state="cancelled", message="this attempt was superseded by a newer one; its results are discarded"))
            self.jobs.pop(job.job_id, None)
            return
        if entry is None:
            await self._broadcast(job, JobStatus(job_id=job.job_id, state=job.state, message=job.message))  # type: ignore[arg-type]
            self.jobs.pop(job.job_id, None)
            return
        await self._broadcast(job, JobStatus(job_id=job.job_id, state="succeeded", message=f"{job.kind} job finished"))
        for follower in list(job.followers):
            self._spawn(self._send_results(follower, job.job_id))

    async def _send_results(self, link: PeerLink, job_id: str) -> None:
        entry = self.outbox.get(job_id)
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

    async def _owner_of(self, job_id: str) -> tuple[bool, str | None]:
        """(known, owner hash) of a job, running or parked in the outbox (which outlives a restart)."""
        job = self.jobs.get(job_id)
        if job is not None:
            return True, job.owner_sha256
        entry = await asyncio.to_thread(self.outbox.get, job_id)
        if entry is not None:
            return True, entry.metadata.get(OWNER_KEY)
        return False, None

    async def _attach(self, link: PeerLink, msg: Attach) -> None:
        job_id = msg.job_id
        known, owner = await self._owner_of(job_id)
        if known and not owner_matches(owner, msg.owner):
            log.warning("refused an attach to job %s: wrong owner credential", job_id)
            await link.send(not_owner(job_id, "attach to"))
            return
        job = self.jobs.get(job_id)
        if job is not None and job.task is not None and not job.task.done():
            job.followers.add(link)
            await link.send(JobStatus(job_id=job_id, state="running", message="attached to running job", detail={"progress": job.last_progress}))
            log.info("client attached to running job %s", job_id)
            return
        if self.outbox.get(job_id) is not None:
            await link.send(JobStatus(job_id=job_id, state="succeeded", message="job finished earlier; sending results"))
            self._spawn(self._send_results(link, job_id))
            return
        await link.send(PeerError(code="unknown_job", message=f"worker {self.name} has no job {job_id}", job_id=job_id))

    async def _control(self, link: PeerLink, msg: Control) -> None:
        job = self.jobs.get(msg.job_id)
        if job is None or job.engine is None or job.task is None or job.task.done():
            await link.send(PeerError(code="unknown_job", message=f"no running job {msg.job_id} on this worker", job_id=msg.job_id))
            return
        if not owner_matches(job.owner_sha256, msg.owner):
            log.warning("refused a %s of job %s: wrong owner credential", msg.command, msg.job_id)
            await link.send(not_owner(msg.job_id, msg.command))
            return
        if msg.command == "stop":
            log.info("job %s: stop early requested", msg.job_id)
            job.state = "stopping"
            await job.engine.stop_early()
        else:
            log.info("job %s: cancel requested", msg.job_id)
            await job.engine.cancel(self.options.cancel_grace)

    async def _ack(self, link: PeerLink, client: str, msg: ResultAck) -> None:
        """Drop the outbox copy, only for the job's owner: an ack deletes hours of GPU work."""
        known, owner = await self._owner_of(msg.job_id)
        if known and not owner_matches(owner, msg.owner):
            log.warning("refused a result_ack of job %s from %s: wrong owner credential", msg.job_id, client)
            await link.send(not_owner(msg.job_id, "acknowledge (and so delete) the results of"))
            return
        if await asyncio.to_thread(self.outbox.get, msg.job_id) is not None:
            await asyncio.to_thread(self.outbox.ack, msg.job_id)
            self.jobs.pop(msg.job_id, None)
            log.info("job %s: results acknowledged by %s; outbox entry removed", msg.job_id, client)
            await asyncio.to_thread(shutil.rmtree, child_path(self.data_dir / "incoming", msg.job_id), True)
            await asyncio.to_thread(shutil.rmtree, child_path(self.data_dir / "jobs", msg.job_id), True)
        await link.send(ResultReleased(job_id=msg.job_id))
