"""The networked worker: composition and lifecycle.

One :class:`Worker` registers in a room with its capabilities (as the same peer in the
same room after a restart: :mod:`.identity`), answers WebRTC offers relayed by the
coordinator (:mod:`.link_server`: pre-auth limits, then :func:`~.link_server.serve`
per authenticated link) and runs one job at a time. Where each job is lives in one
place: the worker's single reservation (``reserved``) and then its
:class:`~.job_session.JobSession` in ``sessions``, which owns the engine, the
followers, the outbox hand-off and attach. A queued job's session carries its
:class:`~.queue_attempt.QueueAttempt` (reports, leases, fencing, checkpoint relay;
docs/queue.md). The worker's own status (available/reserved/busy, what the
coordinator sees) is :class:`~.state.WorkerState`.

The worker hands itself to each part; a part sees only a narrow Protocol of what it uses
(:mod:`.ports`, ``SessionHost``, ``LinkHost``, …), so nothing imports this module back.
Its options are :class:`~.options.WorkerOptions` (importable from here too).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from pathlib import Path
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from .. import __version__
from ..errors import UserError
from ..coordinator.client import CoordinatorClient, CoordinatorError, create_room
from ..peer import secrets
from ..peer.link import PeerLink
from ..protocol.coordinator import WORKER_TOKEN_PREFIX, Relay
from ..protocol.job_state import JobState
from ..protocol.queue import JobDispatch
from ..protocol.session_string import SessionString
from ..util.tasks import TaskSet
from .private import private_dir
from .leftovers import clear_incoming
from . import identity, link_server
from .gpu import capabilities
from .slurm.adopt import adopt_jobs
from .job_session import JobSession
from .options import WorkerOptions
from .outbox import Outbox
from .queue_attempt import QueueAttempt, on_dispatch
from .state import StatusSnapshot, Status, WorkerState

if TYPE_CHECKING:
    from ..coordinator.server import CoordinatorServer
    from ..util.sdnotify import WatchdogPinger
    from ..util.status_server import StatusServer

log = logging.getLogger(__name__)
T = TypeVar("T")


class Worker:
    def __init__(self, options: WorkerOptions, *, probe: Callable[[], dict[str, Any]] = capabilities):
        """``probe`` reports GPUs and versions; tests replace it at the NVML boundary."""
        self.options = options
        self._probe = probe
        self.name = options.name or socket.gethostname()
        self.data_dir = Path(options.data_dir)
        self.state = WorkerState(self.name)
        self.outbox = Outbox(self.data_dir)
        #: The one job held for a client that has not submitted yet (a reservation).
        self.reserved: JobSession | None = None
        #: Every job past its reservation, by id, until it ends or its results are acknowledged.
        self.sessions: dict[str, JobSession] = {}
        self._published_status: str | None = None
        self.coordinator: CoordinatorClient | None = None
        self.embedded: CoordinatorServer | None = None
        self.server_url: str | None = options.server_url
        self.room_id: str | None = options.room_id
        self.token: str | None = options.token
        self.secret: bytes | None = None
        self.last_error: str | None = None
        self.started_at = time.time()
        self.status_server: StatusServer | None = None
        self.capabilities: dict[str, Any] = {}
        self.links: set[PeerLink] = set()
        self._tasks = TaskSet(log, "worker")
        self._watchdog: WatchdogPinger | None = None
        self.stopping = False
        self._lock = identity.DataDirLock(self.data_dir)

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        """Lock the data dir, come back as the same peer in the same room (identity.py),
        start an embedded coordinator if none is configured, register, serve."""
        if self.server_url and self.room_id and self.token:
            self._require_secret()  # before anything is made on disk
        await asyncio.to_thread(private_dir, self.data_dir, "jobs", "incoming", "cache", "partial")
        await asyncio.to_thread(self._lock.acquire)
        try:
            await asyncio.to_thread(clear_incoming, self.data_dir)  # uploads a killed run left unfinished
            await self._start()
        except BaseException:
            if self.embedded is not None:
                await self.embedded.stop()
            self._lock.release()
            raise

    async def _start(self) -> None:
        saved = await asyncio.to_thread(identity.load, self.data_dir)
        joining = bool(self.server_url and self.room_id and self.token)
        where = self.server_url or identity.EMBEDDED
        if not self.server_url:
            await self._start_embedded(saved.embedded_port if saved.same_place(where) else None)
        own_room = not (self.room_id and self.token)
        if own_room and saved.same_place(where) and saved.room_id and saved.token:
            self.room_id, self.token = saved.room_id, saved.token
            self.secret = secrets.lookup_secret(self.room_id, explicit=self.options.room_secret) or (saved.secret.encode() if saved.secret else None)
            log.info("back in room %s (kept in %s)", self.room_id, self.data_dir / identity.IDENTITY_FILE)
        elif own_room:
            await self._create_room()
        if not joining and self.secret is None:
            assert self.room_id
            self.secret = secrets.lookup_secret(self.room_id, explicit=self.options.room_secret) or await asyncio.to_thread(self._new_secret)
        self.capabilities = await asyncio.to_thread(self._probe)
        peer_id = saved.peer_id if saved.same_place(where, self.room_id) and not self.enrolled else None
        try:
            await self._register(peer_id)
        except CoordinatorError as exc:
            if not (own_room and exc.code in ("bad_token", "room_expired")):
                raise
            log.warning("room %s is gone from %s (%s); making a new room: earlier session strings stop working", self.room_id, self.server_url, exc.code)
            await self._create_room()
            self.secret = await asyncio.to_thread(self._new_secret)
            await self._register(None)
        assert self.coordinator is not None
        self.state.add_observer(self._on_status_change)
        log.info("registered in room %s as %s (%s)", self.room_id, self.coordinator.peer_id, self.capabilities.get("accelerator"))
        kept = identity.Identity(
            peer_id=self.peer_id, server_url=where, room_id=self.room_id, token=self.token if own_room else None,
            embedded_port=self.embedded.port if self.embedded is not None else None,
            secret=self.secret.decode("utf-8", "replace") if own_room and self.secret else None,
        )
        await asyncio.to_thread(identity.save, self.data_dir, kept)
        await self._start_service_hooks()
        await adopt_jobs(self)  # Slurm jobs that kept running while this worker was away
        self.spawn(self._refresh_capabilities())

    async def _start_embedded(self, saved_port: int | None) -> None:
        """The worker's own coordinator; on "any free port" it takes the port it had last
        time, so the URL in the session string stays the same."""
        from ..coordinator.server import CoordinatorServer

        db = self.options.embedded_db or str(self.data_dir / "coordinator.sqlite3")
        ports = [self.options.embedded_port]
        if self.options.embedded_port == 0 and saved_port:
            ports.insert(0, saved_port)
        for i, port in enumerate(ports):
            self.embedded = CoordinatorServer(
                self.options.embedded_host, port, db,
                heartbeat_interval=self.options.heartbeat_interval, heartbeat_timeout=self.options.heartbeat_timeout,
                allow_room_token_workers=True,  # its only worker is this one, the room's creator
            )
            try:
                await self.embedded.start()
                break
            except OSError as exc:
                await self.embedded.stop()
                self.embedded = None
                if i == len(ports) - 1:
                    raise
                log.warning("embedded coordinator: port %d (used last time) is taken (%s); taking another: earlier session strings stop working", port, exc.strerror)
        assert self.embedded is not None
        self.server_url = self.embedded.url
        log.info("no coordinator configured: started an embedded one at %s", self.server_url)

    async def _create_room(self) -> None:
        assert self.server_url
        self.room_id, self.token, _ = await create_room(self.server_url)
        log.info("created room %s", self.room_id)

    async def _register(self, peer_id: str | None) -> None:
        """Register as ``peer_id`` (``None``: a new id). A restarted worker's old connection
        may still count until the coordinator's heartbeat timeout: wait that out."""
        assert self.server_url and self.room_id and self.token
        deadline = time.monotonic() + 2 * self.options.heartbeat_timeout + 5
        while True:
            self.coordinator = CoordinatorClient(
                self.server_url, room_id=self.room_id, token=self.token, role="worker", peer_id=peer_id,
                metadata=self._metadata(), status=self.state.status.value,
            )
            self.coordinator.add_relay_handler(self._on_relay)
            self.coordinator.add_push_handler(self._on_push)
            try:
                await self.coordinator.start()
                return
            except CoordinatorError as exc:
                if exc.code != "peer_id_in_use" or time.monotonic() > deadline:
                    raise
                log.info("peer id %s is still held by this worker's previous connection; waiting for the coordinator to drop it", peer_id)
                await asyncio.sleep(1.0)

    async def _refresh_capabilities(self) -> None:
        """Re-probe GPUs now and then: free memory is what discovery filters and auto-select use."""
        while not self.stopping:
            await asyncio.sleep(self.options.capabilities_refresh)
            fresh = await asyncio.to_thread(self._probe)
            if fresh != self.capabilities and self.coordinator is not None:
                self.capabilities = fresh
                await self.coordinator.update(metadata=self._metadata())
                log.info("capabilities refreshed: %s", ", ".join(f"{g.get('name')} {g.get('memory_free_mb')} MB free" for g in fresh.get("gpus", [])) or "cpu")

    async def _start_service_hooks(self) -> None:
        from ..util import sdnotify
        from ..util.status_server import StatusServer

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
        self.stopping = True
        from ..util import sdnotify

        sdnotify.stopping()
        job = self.job
        if job is not None and job.engine is not None and job.task is not None and job.live:
            log.info("stopping job %s before exit", job.job_id)
            await (job.engine.detach() if job.engine.outlives_worker and job.attempt is None else job.engine.cancel(self.options.cancel_grace))
            await asyncio.gather(job.task, return_exceptions=True)
        for link in list(self.links):
            await link.close("worker shutting down")
        await self._tasks.aclose()
        if self._watchdog is not None:
            await self._watchdog.stop()
        if self.status_server is not None:
            await self.status_server.stop()
        if self.coordinator is not None:
            await self.coordinator.close()
        if self.embedded is not None:
            await self.embedded.stop()
        self._lock.release()

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
        return {**self.capabilities, "name": self.name, "labels": self.options.labels, "version": __version__,
                "needs_secret": self.secret is not None}

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

    def _on_status_change(self, snap: StatusSnapshot) -> None:
        status = snap.status.value
        if self.coordinator is not None and not self.stopping and status != self._published_status:
            self._published_status = status
            self.spawn(self.coordinator.update(status=status))

    # -- where each job is: one reservation, then sessions ------------------------
    @property
    def jobs(self) -> dict[str, JobSession]:
        """Jobs past their reservation (running, or results waiting for their owner)."""
        return self.sessions

    @property
    def job(self) -> JobSession | None:
        """The job sleap-nn is running now, if any (one at a time)."""
        return next((s for s in self.sessions.values() if s.state in (JobState.RUNNING, JobState.STOPPING)), None)

    def reserve(self, client: str, job_id: str, attempt: QueueAttempt | None = None) -> JobSession:
        """``available → reserved`` for ``client``'s job; :class:`WorkerBusy` when not available."""
        self.state.reserve(client)
        self.reserved = JobSession(self, job_id, client, attempt=attempt)
        return self.reserved

    def reserved_for(self, client: str, job_id: str) -> bool:
        return self.reserved is not None and (self.reserved.client_id, self.reserved.job_id) == (client, job_id)

    def release(self, client: str, job_id: str, state: JobState = JobState.CANCELLED) -> None:
        """Give up a reservation that never became a job (client left, bad package)."""
        if not self.reserved_for(client, job_id):
            return
        assert self.reserved is not None
        if self.state.status is Status.RESERVED:
            self.state.unreserve(client)
        self.reserved.move(state)
        self.reserved = None

    def begin(self, session: JobSession) -> None:
        """The reservation became a job: it is a session from now on."""
        assert session is self.reserved
        self.reserved = None
        self.sessions[session.job_id] = session

    def forget(self, session: JobSession) -> None:
        if self.sessions.get(session.job_id) is session:
            del self.sessions[session.job_id]

    def attempt_for(self, job_id: str) -> QueueAttempt | None:
        """The live queue attempt of ``job_id`` on this worker (reserved or running)."""
        for session in (self.reserved, self.sessions.get(job_id)):
            if session is not None and session.job_id == job_id and session.attempt is not None and session.attempt.active:
                return session.attempt
        return None

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start a background task the worker keeps until it ends (cancelled on stop)."""
        task = self._tasks.spawn(coro)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.last_error = str(task.exception())

    # -- queued jobs (see queue_attempt.py) and offers (see link_server.py) ---------
    def _on_push(self, msg) -> None:
        if isinstance(msg, JobDispatch):
            self.spawn(on_dispatch(self, msg))

    def _on_relay(self, relay: Relay) -> None:
        if relay.kind == "offer" and relay.source:
            self.spawn(link_server.handle_offer(self, relay))


__all__ = ["Worker", "WorkerOptions"]
