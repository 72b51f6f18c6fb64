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
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Literal

from ..config import Settings, load_settings
from ..coordinator.client import CoordinatorClient, CoordinatorError, RelayRejected
from ..peer import secrets
from ..peer.connection import connect
from ..peer.fastpath import FastPaths
from ..peer.errors import AuthError, ConnectError, LinkClosedError, PeerLinkError, TransferError
from ..protocol import ProtocolError
from ..protocol.peer import INPUTS_DIR, Attach, Control, JobResult, JobStatus, JobSubmit, Log, PeerError, Progress
from ..protocol.queue import CheckpointNotice, QueueUpdate
from ..protocol.offer import PeerOffer, SdpOffer
from ..protocol.session_string import SessionString
from .checkpoints import CheckpointError, CheckpointStore
from .errors import RemoteError
from .fetch import fetch_results
from .jobs_store import OwnerStore
from .queue_reports import ROGUE_AUTH_CODES, confirm_if_queued, confirm_results, report_rogue_worker
from .selection import WorkerInfo, auto_select, matches
from .wording import sent_in_words
from .zmq_bridge import LossViewerBridge

log = logging.getLogger(__name__)

DEFAULT_SERVER = "ws://127.0.0.1:8765"
EventKind = Literal["status", "transfer", "progress", "log", "checkpoint", "result", "error"]
#: Errors of one attempt that another attempt cannot fix: withdraw the queued job.
_FATAL_ATTEMPT_CODES = frozenset({"no_package", "missing_secret"})
#: This side cannot take the results now (its disk): end the session, keep the job and its results.
_LOCAL_ATTEMPT_CODES = frozenset({"disk_full", "io_error"})


@dataclass
class ConnectionSpec:
    """How to reach a worker. A session string stands for room, token, worker and server."""

    server_url: str | None = None
    room_id: str | None = None
    token: str | None = None
    session_string: str | None = None
    worker_id: str | None = None
    auto_select: bool = False
    min_gpu_memory_mb: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    room_secret: str | None = None
    ice_servers: list[Any] | None = None
    ice_loopback: bool | None = None
    timeout: float = 30.0

    def resolved(self, settings: Settings | None = None) -> "ConnectionSpec":
        """Fill gaps from the session string, then from config; check that enough is known."""
        settings = settings or load_settings()
        spec = ConnectionSpec(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        if spec.session_string:
            try:
                session = SessionString.decode(spec.session_string)
            except ProtocolError as exc:
                raise RemoteError(exc.code, str(exc)) from None
            spec.room_id, spec.token = session.room_id, session.token
            spec.worker_id = spec.worker_id or session.peer_id
            spec.server_url = spec.server_url or session.server_url
            spec.room_secret = spec.room_secret or session.secret
        spec.server_url = spec.server_url or settings.get("signaling_ws") or DEFAULT_SERVER
        spec.room_id = spec.room_id or settings.get("room_id")
        spec.token = spec.token or settings.get("token")
        if spec.ice_servers is None:
            spec.ice_servers = list(settings.get("ice_servers", []))
        if spec.ice_loopback is None:
            spec.ice_loopback = bool(settings.get("ice_loopback", False))
        if not spec.room_id or not spec.token:
            raise RemoteError("no_room", "no room given: pass --session-string, or --room-id and --token (the worker prints both)")
        return spec


@dataclass
class QueueOptions:
    """Submit through the coordinator's queue: what a worker must offer, and priority.

    ``labels`` values are shell globs (``gpu=a100*``); ``worker_id`` pins the job.
    """

    min_gpu_memory_mb: int = 0
    gpu_count: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    worker_id: str | None = None
    priority: int = 0
    max_retries: int = 3


@dataclass(frozen=True)
class JobEvent:
    kind: EventKind
    data: dict[str, Any]


@dataclass
class JobOutcome:
    job_id: str
    kind: Literal["train", "track"]
    worker_id: str
    model_dirs: list[Path] = field(default_factory=list)
    predictions: Path | None = None
    prediction_files: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    detached: bool = False


async def list_workers(spec: ConnectionSpec, *, include_busy: bool = True) -> list[WorkerInfo]:
    """Workers in the spec's room that pass its filters, most free GPU memory first."""
    spec = spec.resolved()
    async with _coordinator(spec) as coord:
        return await _discover(coord, spec, include_busy=include_busy)


async def _discover(coord: CoordinatorClient, spec: ConnectionSpec, *, include_busy: bool = True) -> list[WorkerInfo]:
    peers = await coord.discover(role="worker", labels=spec.labels or None)
    workers = [WorkerInfo.from_peer(p) for p in peers]
    workers = [w for w in workers if matches(w, min_gpu_memory_mb=spec.min_gpu_memory_mb, labels=spec.labels)]
    if not include_busy:
        workers = [w for w in workers if w.status == "available"]
    return sorted(workers, key=lambda w: (-w.gpu_memory_free_mb, w.name))


@contextlib.asynccontextmanager
async def _coordinator(spec: ConnectionSpec) -> AsyncIterator[CoordinatorClient]:
    assert spec.server_url and spec.room_id and spec.token
    coord = CoordinatorClient(spec.server_url, room_id=spec.room_id, token=spec.token, role="client", reconnect=False)
    try:
        await coord.start()
    except CoordinatorError as exc:
        raise RemoteError(exc.code, _coordinator_hint(exc, spec.server_url)) from None
    try:
        yield coord
    finally:
        await coord.close()


def _coordinator_hint(exc: CoordinatorError, url: str) -> str:
    if exc.code == "unreachable":
        return f"cannot reach the coordinator at {url}; is `sleap-rtc server` (or a worker with an embedded one) running there?"
    if exc.code in ("bad_token", "unknown_room"):
        return f"the coordinator refused the room credentials ({exc.message}); copy the room id and token (or session string) again from the worker"
    if exc.code == "room_expired":
        return "the room has expired; ask for a new room (`sleap-rtc room create`) and restart the worker with it"
    return exc.message


class JobHandle:
    """A job in flight: its events, its result, and the controls a user has over it."""

    def __init__(
        self,
        kind: Literal["train", "track"],
        spec: ConnectionSpec,
        *,
        project_dir: Path,
        package_path: Path | None,
        job_id: str | None = None,
        intent: Literal["submit", "attach"] = "submit",
        publish_port: int | None = None,
        controller_port: int | None = None,
        options: dict[str, Any] | None = None,
        settings: Settings | None = None,
        queue: QueueOptions | None = None,
        inputs: dict[str, Path] | None = None,
        owner: str | None = None,
        local_files: dict[str, Path] | None = None,
    ):
        """``owner``: the job's owner credential; by default made at submit (and found again
        on attach) in ``<project_dir>/.sleap-rtc/owners/``. ``local_files``: file name in the
        package -> the user's own file, so returned labels point at it (inputs count too)."""
        self.kind = kind
        self.inputs = {name: Path(p) for name, p in (inputs or {}).items()}
        self.local_files = {**{n: Path(p) for n, p in (local_files or {}).items()}, **self.inputs}
        self.job_id = job_id or uuid.uuid4().hex[:12]
        self.intent = intent
        self.worker: WorkerInfo | None = None
        self.project_dir = Path(project_dir)
        self.package_path = Path(package_path) if package_path else None
        self.options = dict(options or {})
        self._settings = settings or load_settings()
        self._spec = spec
        self._publish_port = publish_port
        self._controller_port = controller_port
        self._events: asyncio.Queue[JobEvent | None] = asyncio.Queue()
        self._link = None
        self._detached = False
        self.queue = queue
        self.attempt = 0
        self._coord: CoordinatorClient | None = None
        self._checkpoints: CheckpointStore | None = None
        self.owner = owner or ""
        self._task = asyncio.ensure_future(self._run())

    # -- public ---------------------------------------------------------------
    async def events(self) -> AsyncIterator[JobEvent]:
        """Every event until the job ends (the last one is ``result`` or ``error``)."""
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    async def result(self) -> JobOutcome:
        return await asyncio.shield(self._task)

    async def stop_early(self) -> None:
        """Ask the trainer to finish now, keeping its best checkpoint."""
        await self._control("stop")

    async def cancel(self) -> None:
        """Kill the remote job; nothing is returned. A queued job is withdrawn from the
        queue first, so the coordinator does not hand it to another worker."""
        if self.queue is not None and self._coord is not None:
            with contextlib.suppress(CoordinatorError):
                await self._coord.queue_cancel(self.job_id, owner=self.owner)
            if self._link is None:
                self._emit("status", state="cancelling", message="withdrawn from the queue")
                return
        await self._control("cancel")

    async def detach(self) -> None:
        """Leave the job running on the worker; fetch it later with ``attach(job_id)``."""
        self._detached = True
        if self._link is not None:
            await self._link.close("client detached")

    def done(self) -> bool:
        return self._task.done()

    # -- internals ------------------------------------------------------------
    def _emit(self, kind: EventKind, /, **data: Any) -> None:
        self._events.put_nowait(JobEvent(kind, data))

    async def _control(self, command: Literal["stop", "cancel"]) -> None:
        if self._link is None:
            raise RemoteError("not_connected", "the job is not connected to a worker yet")
        await self._link.send(Control(job_id=self.job_id, command=command, owner=self.owner))
        self._emit("status", state="stopping" if command == "stop" else "cancelling", message=f"{command} requested")

    async def _run(self) -> JobOutcome:
        try:
            outcome = await self._session()
            self._emit("result", outcome=outcome)
            return outcome
        except RemoteError as exc:
            self._emit("error", code=exc.code, message=exc.message)
            raise
        except (ConnectError, AuthError, TransferError) as exc:
            code = getattr(exc, "code", None) or getattr(exc, "stage", "connect")
            err = RemoteError(str(code), str(exc))
            self._emit("error", code=err.code, message=err.message)
            raise err from None
        except (LinkClosedError, PeerLinkError) as exc:
            err = RemoteError("connection_lost", f"lost the connection to the worker ({exc}); the job keeps running there: fetch it later with --attach {self.job_id}")
            self._emit("error", code=err.code, message=err.message)
            raise err from None
        finally:
            self._events.put_nowait(None)

    async def _session(self) -> JobOutcome:
        spec = self._spec.resolved(self._settings)
        secret = secrets.lookup_secret(spec.room_id, explicit=spec.room_secret)
        await self._load_owner()
        if self.queue is not None:  # a new queued job, or --attach to one still in the queue
            return await self._queued_session(spec, secret)
        async with _coordinator(spec) as coord:
            worker = await self._choose_worker(coord, spec)
            self.worker = worker
            self._emit("status", state="connecting", message=f"connecting to {worker.name}", worker=worker.peer_id)
            link = await self._open_link(coord, spec, worker.peer_id, self.intent)
        outcome = await self._over_link(link, worker, secret, self.intent)
        if self.intent == "attach" and not outcome.detached:
            with contextlib.suppress(RemoteError):
                async with _coordinator(spec) as coord:
                    await confirm_if_queued(coord, self.job_id, self.owner)
        return outcome

    async def _load_owner(self) -> None:
        """Make the owner credential before anything is submitted; find it again to attach."""
        if self.owner:
            return
        store = OwnerStore(self.project_dir)
        try:
            if self.intent == "submit":
                self.owner = await asyncio.to_thread(store.create, self.job_id)
            else:
                self.owner = await asyncio.to_thread(store.get, self.job_id) or ""
        except ProtocolError as exc:
            raise RemoteError(exc.code, str(exc)) from None
        except OSError as exc:
            raise RemoteError("disk_full" if exc.errno == errno.ENOSPC else "io_error",
                              f"cannot keep the job's owner credential in {store.dir} ({exc.strerror or exc}); free space there or pick another --project-dir") from None
        if not self.owner:
            log.warning("job %s: no owner credential in %s; the worker will refuse unless the job predates owners", self.job_id, store.dir)

    async def _open_link(self, coord: CoordinatorClient, spec: ConnectionSpec, worker_id: str, intent: str):
        async def send_offer(offer: dict) -> dict:
            payload = PeerOffer(offer=SdpOffer(sdp=offer["sdp"], type=offer["type"]), job_id=self.job_id, intent=intent)  # type: ignore[arg-type]
            await coord.relay(worker_id, "offer", payload.to_dict())
            try:
                answer = await coord.next_relay(kind="answer", source=worker_id)
            except RelayRejected as exc:
                raise RemoteError(exc.code, exc.message) from None
            return answer.payload

        link = await connect(
            send_offer,
            ice_servers=await coord.ice_servers(spec.ice_servers),
            timeout=spec.timeout,
            role="client",
            peer_id=coord.peer_id or "",
            allow_loopback=spec.ice_loopback,
            fastpaths=FastPaths.from_settings(self._settings),
        )
        if link.path is not None:
            self._emit("status", state="connected", message=link.path.summary(), path=link.path.as_dict())
        return link

    async def _over_link(self, link, worker: WorkerInfo, secret, intent: str, *, resume: bool = False) -> JobOutcome:
        """Authenticate, send the package (and a checkpoint to resume from), follow the job."""
        self._link = link
        try:
            incoming = self.project_dir / ".sleap-rtc" / "incoming" / self.job_id
            link.accept_files(incoming, cache_dir=self.project_dir / ".sleap-rtc" / "cache", partial_dir=self.project_dir / ".sleap-rtc" / "partial",
                              max_size=int(self._settings.get("transfer.max_file_mb", 20480)) * 2**20,
                              cache_max_bytes=int(self._settings.get("transfer.cache_mb", 10240)) * 2**20)
            await link.authenticate(secret)
            if intent == "attach":
                await link.send(Attach(job_id=self.job_id, owner=self.owner))
            if intent == "submit":
                if resume:
                    await self._hand_over_checkpoint(link)
                await self._send_package(link)
            return await self._follow(link, worker, incoming)
        finally:
            await link.close("job session over")
            if self._link is link:
                self._link = None

    # -- queued jobs -------------------------------------------------------------
    async def _queued_session(self, spec: ConnectionSpec, secret) -> JobOutcome:
        """Submit to the coordinator's queue and follow the job across attempts."""
        if self.package_path is None:
            raise RemoteError("no_package", "a queued job needs its package to hand to the worker that takes it: give --pkg-path PKG (package_path)")
        assert self.queue is not None and self.package_path is not None and spec.server_url and spec.room_id and spec.token
        if not self.package_path.is_file():
            raise RemoteError("no_package", f"package {self.package_path} does not exist")
        coord = CoordinatorClient(spec.server_url, room_id=spec.room_id, token=spec.token, role="client", reconnect=True,
                                  backoff_initial=0.2, backoff_max=5.0)
        try:
            await coord.start()
        except CoordinatorError as exc:
            raise RemoteError(exc.code, _coordinator_hint(exc, spec.server_url)) from None
        self._coord = coord
        self._checkpoints = CheckpointStore(self.project_dir / ".sleap-rtc" / "checkpoints", self.job_id)
        try:
            return await self._queue_loop(coord, spec, secret)
        finally:
            self._coord = None
            await coord.close()

    async def _queue_loop(self, coord: CoordinatorClient, spec: ConnectionSpec, secret) -> JobOutcome:
        q = self.queue
        assert q is not None and self.package_path is not None
        job_spec = {"kind": self.kind, "package": self.package_path.name, "size": self.package_path.stat().st_size}
        backlog: list[QueueUpdate] = []
        try:
            if self.intent == "attach":  # follow (and own) the queued job from here on
                backlog.append(await coord.queue_watch(self.job_id, owner=self.owner))
                position = backlog[0].position
            else:
                position = await coord.queue_submit(
                    self.job_id, job_spec, min_gpu_memory_mb=q.min_gpu_memory_mb, gpu_count=q.gpu_count, labels=q.labels,
                    worker_id=q.worker_id, priority=q.priority, max_retries=q.max_retries, owner=self.owner,
                )
        except CoordinatorError as exc:
            raise RemoteError(exc.code, exc.message) from None
        if not backlog:
            self._emit("status", state="queued", message=f"queued as job {self.job_id}, position {position} (0 = next)", position=position)
        attempt_task: asyncio.Task | None = None
        last_state = "queued"
        fetches = 0
        seen_reconnects = coord.reconnects

        def start(attempt: int, worker_id: str, intent: str) -> asyncio.Task:
            return asyncio.ensure_future(self._attempt(coord, spec, secret, attempt, worker_id, intent))

        try:
            while True:
                waiter = asyncio.ensure_future(asyncio.sleep(0, result=backlog.pop(0)) if backlog else coord.next_push("queue_update", job_id=self.job_id, timeout=5.0))
                waits = {waiter} | ({attempt_task} if attempt_task is not None else set())
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if attempt_task is not None and attempt_task in done:
                    finished, attempt_task = attempt_task, None
                    try:
                        outcome = finished.result()
                    except RemoteError as exc:
                        if exc.code in _FATAL_ATTEMPT_CODES:
                            with contextlib.suppress(CoordinatorError):
                                await coord.queue_cancel(self.job_id, owner=self.owner)
                            raise
                        if exc.code in _LOCAL_ATTEMPT_CODES:
                            raise
                        log.warning("job %s attempt %d ended without results: %s", self.job_id, self.attempt, exc)
                        self._emit("status", state="waiting", message=f"attempt {self.attempt} ended ({exc.message}); waiting for the coordinator")
                    else:
                        waiter.cancel()
                        with contextlib.suppress(asyncio.CancelledError, TimeoutError, CoordinatorError):
                            await waiter
                        return outcome
                    if last_state in ("succeeded", "results_ready") and fetches < 3:
                        fetches += 1
                        attempt_task = start(self.attempt, self.worker.peer_id if self.worker else "", "attach")
                if waiter not in done:
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError, TimeoutError, CoordinatorError):
                        await waiter
                    continue
                try:
                    update = waiter.result()
                except TimeoutError:
                    if coord.reconnects != seen_reconnects and coord.connected:
                        try:
                            update = await coord.queue_watch(self.job_id, owner=self.owner)  # updates may have been missed while away
                        except CoordinatorError as exc:
                            log.info("job %s: queue_watch after reconnect failed: %s", self.job_id, exc)
                            continue
                        seen_reconnects = coord.reconnects
                    else:
                        continue
                except CoordinatorError as exc:
                    raise RemoteError("coordinator_lost", f"lost the coordinator ({exc.message}); the job stays queued there: check it with `sleap-rtc admin jobs`") from None
                assert isinstance(update, QueueUpdate)
                last_state = update.state
                if update.state == "queued":
                    if attempt_task is not None:
                        await self._drop_attempt(attempt_task, "the job was requeued")
                        attempt_task = None
                    self._emit("status", state="queued", message=update.message or f"position {update.position} in the queue", position=update.position)
                elif update.state == "dispatched" and update.attempt > self.attempt and update.worker_id:
                    if attempt_task is not None:
                        await self._drop_attempt(attempt_task, f"attempt {update.attempt} replaces it")
                    self.attempt = update.attempt
                    self._emit("status", state="dispatched", message=update.message or f"dispatched to {update.worker_id}", worker=update.worker_id, attempt=update.attempt)
                    attempt_task = start(update.attempt, update.worker_id, "submit")
                elif update.state == "running" and attempt_task is None and update.attempt > self.attempt and update.worker_id:
                    self.attempt = update.attempt  # attached while it runs: follow it there
                    attempt_task = start(update.attempt, update.worker_id, "attach")
                elif update.state == "running":
                    self._emit("status", state="running", message=update.message, attempt=update.attempt)
                elif update.state in ("succeeded", "results_ready"):
                    if attempt_task is None and update.worker_id and fetches < 3:
                        fetches += 1
                        attempt_task = start(update.attempt, update.worker_id, "attach")
                elif update.state in ("failed", "cancelled"):
                    if attempt_task is not None:
                        await self._drop_attempt(attempt_task, f"the job {update.state}")
                        attempt_task = None
                    raise RemoteError(f"job_{update.state}", update.message or f"the job was {update.state}")
        finally:
            if attempt_task is not None:
                await self._drop_attempt(attempt_task, "the session ended")

    async def _drop_attempt(self, task: asyncio.Task, why: str) -> None:
        """Stop following an attempt that no longer owns the job; its results are never taken."""
        if not task.done():
            log.info("job %s: dropping the link of an earlier attempt (%s)", self.job_id, why)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _attempt(self, coord: CoordinatorClient, spec: ConnectionSpec, secret, attempt: int, worker_id: str, intent: str) -> JobOutcome:
        worker = await self._worker_info(coord, worker_id)
        self.worker = worker
        self._emit("status", state="connecting", message=f"connecting to {worker.name} (attempt {attempt})", worker=worker_id, attempt=attempt)
        try:
            link = await self._open_link(coord, spec, worker_id, intent)
            outcome = await self._over_link(link, worker, secret, intent, resume=attempt > 1)
        except AuthError as exc:
            if exc.code in ROGUE_AUTH_CODES:
                raise await report_rogue_worker(coord, self.job_id, attempt, worker.name, exc) from None
            raise RemoteError(exc.code, str(exc)) from None
        except (ConnectError, TransferError) as exc:
            raise RemoteError(str(getattr(exc, "code", None) or getattr(exc, "stage", "connect")), str(exc)) from None
        except (LinkClosedError, PeerLinkError) as exc:
            raise RemoteError("connection_lost", f"lost the connection to worker {worker.name} ({exc})") from None
        except CoordinatorError as exc:
            raise RemoteError(exc.code, exc.message) from None
        if not outcome.detached:
            await confirm_results(coord, self.job_id, attempt)
        return outcome

    async def _worker_info(self, coord: CoordinatorClient, worker_id: str) -> WorkerInfo:
        with contextlib.suppress(CoordinatorError):
            for peer in await coord.discover(role="worker"):
                if peer.peer_id == worker_id:
                    return WorkerInfo.from_peer(peer)
        return WorkerInfo(peer_id=worker_id, name=worker_id, hostname="", status="", accelerator="", gpu_name="",
                          gpu_memory_free_mb=0, gpu_memory_total_mb=0, gpu_count=0)

    async def _hand_over_checkpoint(self, link) -> None:
        """Every model's newest checkpoint (a top-down job's finished model included)."""
        store = self._checkpoints
        for info in await asyncio.to_thread(store.per_model) if store is not None else []:
            self._emit("status", state="resuming", message=f"handing over the checkpoint of {info.model} (epoch {info.epoch}) to resume from")
            await link.send(CheckpointNotice(job_id=self.job_id, attempt=self.attempt, model=info.model, sha256=info.sha256, size=info.size, epoch=info.epoch))
            sent = await link.send_file(info.path, name=f"resume-{info.model}.ckpt")
            log.info("job %s: handed over checkpoint %s", self.job_id, sent.summary())

    async def _keep_checkpoint(self, link, notice: CheckpointNotice) -> None:
        """A checkpoint relayed by the worker: keep it atomically as the job's latest."""
        try:
            got = await link.receive_file(timeout=max(60.0, notice.size / 1e6))
        except (TimeoutError, TransferError) as exc:
            log.warning("job %s: relayed checkpoint did not arrive: %s", self.job_id, exc)
            return
        store = self._checkpoints
        assert store is not None
        try:
            info = await asyncio.to_thread(store.put, got.path, sha256=notice.sha256, model=notice.model, epoch=notice.epoch,
                                           attempt=notice.attempt, move=True)
        except (CheckpointError, OSError) as exc:
            log.warning("job %s: relayed checkpoint not kept: %s", self.job_id, exc)
            return
        receiver = link.transfers.receiver
        cached = receiver.cached_path(notice.sha256) if receiver is not None else None
        if cached is not None:
            await asyncio.to_thread(cached.unlink, True)
        self._emit("checkpoint", model=info.model, epoch=info.epoch, attempt=info.attempt, path=str(info.path), size=info.size)

    async def _choose_worker(self, coord: CoordinatorClient, spec: ConnectionSpec) -> WorkerInfo:
        workers = await _discover(coord, spec)
        if spec.worker_id:
            for w in workers:
                if w.peer_id == spec.worker_id:
                    return w
            raise RemoteError("no_worker", f"worker {spec.worker_id} is not in the room (or does not match the filters); is it running? `sleap-rtc worker` prints its session string")
        if spec.auto_select or len(workers) == 1:
            chosen = auto_select(workers)
            if chosen is None:
                what = "matching your filters " if (spec.min_gpu_memory_mb or spec.labels) else ""
                raise RemoteError("no_worker", f"no available worker {what}in room {spec.room_id}; start one with `sleap-rtc worker` or try again when one is free")
            return chosen
        if not workers:
            raise RemoteError("no_worker", f"no worker in room {spec.room_id}; start one with `sleap-rtc worker`")
        raise RemoteError("choose_worker", "several workers are available: pick one (worker id) or use auto-select")

    async def _send_package(self, link) -> None:
        """Inputs first, then the package, then ``job_submit``: the worker has every file when it reads the submit."""
        assert self.package_path is not None
        for path in (self.package_path, *self.inputs.values()):
            if not path.is_file():
                raise RemoteError("no_package", f"{'package' if path == self.package_path else 'input'} {path} does not exist")
        shas = {}
        for name, path in self.inputs.items():
            shas[name] = (await self._send_one(link, path, f"{INPUTS_DIR}/{name}")).sha256
        sent = await self._send_one(link, self.package_path, self.package_path.name)
        await link.send(
            JobSubmit(job_id=self.job_id, kind=self.kind, package_sha256=sent.sha256, package_name=self.package_path.name, options=self.options,
                      inputs=shas, owner=self.owner)
        )

    async def _send_one(self, link, path: Path, name: str):
        total = path.stat().st_size
        loop = asyncio.get_running_loop()
        started = loop.time()

        def progress(done: int, size: int) -> None:
            elapsed = max(loop.time() - started, 1e-6)
            self._emit("transfer", direction="upload", name=path.name, done=done, sent=done, total=size, rate_mbps=done / elapsed / 1e6)

        self._emit("status", state="transferring", message=f"sending {path.name} ({total / 1e6:.1f} MB)")
        sent = await link.send_file(path, name=name, progress=progress)
        self._emit("status", state="transferred", message=sent_in_words(path.name, sent), via=sent.via)
        log.info("job %s: sent %s", self.job_id, sent.summary())
        return sent

    async def _follow(self, link, worker: WorkerInfo, incoming: Path) -> JobOutcome:
        bridge = None
        if self._publish_port:
            bridge = LossViewerBridge(self._publish_port, self._controller_port, on_stop=self.stop_early)
            await bridge.start()
        try:
            while True:
                try:
                    msg = await link.recv()
                except LinkClosedError:
                    if self._detached:
                        return JobOutcome(self.job_id, self.kind, worker.peer_id, detached=True)
                    raise
                if isinstance(msg, Progress):
                    self._emit("progress", **msg.event)
                    if bridge is not None:
                        await bridge.publish(msg.event)
                elif isinstance(msg, Log):
                    self._emit("log", line=msg.line)
                elif isinstance(msg, JobStatus):
                    self._emit("status", state=msg.state, message=msg.message, **msg.detail)
                    if msg.state in ("failed", "cancelled"):
                        raise RemoteError(f"job_{msg.state}", msg.message or f"the job was {msg.state} on the worker")
                elif isinstance(msg, CheckpointNotice) and self._checkpoints is not None:
                    await self._keep_checkpoint(link, msg)
                elif isinstance(msg, JobResult):
                    return await self._fetch_results(link, worker, msg, incoming)
                elif isinstance(msg, PeerError):
                    raise RemoteError(msg.code, msg.message)
        finally:
            if bridge is not None:
                await bridge.close()

    async def _fetch_results(self, link, worker: WorkerInfo, result: JobResult, incoming: Path) -> JobOutcome:
        return await fetch_results(link, result, project_dir=self.project_dir, job_id=self.job_id, kind=self.kind, worker_id=worker.peer_id,
                                   owner=self.owner, emit=self._emit, local_files=self.local_files)


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
    worker that takes it."""
    return JobHandle(kind, spec, project_dir=project_dir, package_path=package_path, job_id=job_id, intent="attach",
                     publish_port=publish_port, controller_port=controller_port, queue=queue, inputs=inputs)


__all__ = ["ConnectionSpec", "JobEvent", "JobHandle", "JobOutcome", "QueueOptions", "RemoteError", "WorkerInfo", "attach", "list_workers",
           "submit_inference", "submit_training"]
