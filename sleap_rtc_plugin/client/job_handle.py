"""A job in flight on the client side: one object, one explicit state, one task.

:class:`JobHandle` is what ``submit_training`` / ``submit_inference`` / ``attach``
return. Its task finds the worker (or goes through the queue: ``queue_follow.py``),
opens the link, authenticates, sends the package, relays progress, fetches the results
and records every step in the project's job list (``jobs_store.JobList``). Its
:attr:`JobHandle.state` is a :class:`~..protocol.job_state.JobState`, the project's one
job-state vocabulary (``handle_state.py`` maps what the job hears onto it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import uuid
import weakref
from pathlib import Path
from typing import Any, AsyncIterator, Literal

from ..config import Settings, load_settings
from ..coordinator.client import CoordinatorClient, CoordinatorError, RelayRejected
from ..peer import secrets
from ..peer.connection import connect
from ..peer.errors import AuthError, ConnectError, LinkClosedError, PeerLinkError, TransferError
from ..peer.fastpath import FastPaths
from ..protocol import ProtocolError
from ..protocol.offer import PeerOffer, SdpOffer
from ..protocol.peer import INPUTS_DIR, Attach, Control, JobResult, JobStatus, JobSubmit, Log, PeerError, Progress
from ..protocol.queue import CheckpointNotice
from .checkpoints import CheckpointStore
from .connect import ConnectionSpec, QueueOptions, choose_worker, open_coordinator
from .errors import RemoteError
from .fetch import fetch_results
from .project_cache import cap_bytes
from .job_fate import cancelled_error, lost_link_error, presence_probe
from ..protocol.job_state import JobState
from .handle_state import state_after_error, state_of
from .job_recorder import JobRecorder, package_models
from .jobs_store import JobList, JobRecord, OwnerStore
from .outcome import EventKind, JobEvent, JobOutcome
from .queue_follow import hand_over_checkpoint, keep_checkpoint, queued_session
from .queue_reports import confirm_if_queued
from .selection import WorkerInfo
from .wording import sent_in_words
from .zmq_bridge import LossViewerBridge

log = logging.getLogger(__name__)

#: Jobs followed in this process right now, so the GUI's panel and its dialogs share one
#: handle per job (stop/cancel from either) instead of opening a second connection.
_LIVE: "weakref.WeakValueDictionary[str, JobHandle]" = weakref.WeakValueDictionary()


def live_handle(job_id: str) -> "JobHandle | None":
    """The handle following ``job_id`` in this process, if one still runs."""
    handle = _LIVE.get(job_id)
    return handle if handle is not None and not handle.done() else None


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
        self._link_ready = False
        self._detached = False
        self.queue = queue
        self.cancel_requested = False
        self.attempt = 0
        self._coord: CoordinatorClient | None = None
        self._checkpoints: CheckpointStore | None = None
        self.owner = owner or ""
        self.state = JobState.RESERVED
        self.jobs = JobList(self.project_dir)
        self._recorder: JobRecorder | None = None
        self._task = asyncio.ensure_future(self._run())
        _LIVE[self.job_id] = self

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
        self.cancel_requested = True
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

    @property
    def controllable(self) -> bool:
        """Stop early / cancel can reach the job now (a link to its worker, or its queue)."""
        return (self._link is not None and self._link_ready) or (self.queue is not None and self._coord is not None)

    @property
    def stoppable(self) -> bool:
        """Stop Early can reach the trainer now: it needs the link to the job's current worker."""
        return self._link is not None and self._link_ready

    # -- internals ------------------------------------------------------------
    def _emit(self, kind: EventKind, /, **data: Any) -> None:
        if kind == "status":
            new = state_of(str(data.get("state", "")), self.state)
            reconnecting = self.intent == "attach" and new is JobState.DISPATCHED and self.state not in (JobState.RESERVED, JobState.QUEUED)
            self.state = self.state if reconnecting else new  # following a running job again does not move it back
        elif kind == "result":
            self.state = self.state if data["outcome"].detached else JobState.ACKNOWLEDGED
        elif kind == "error":
            self.state = state_after_error(str(data.get("code", "")), self.state)
        if self._recorder is not None:
            self._recorder.observe(kind, data, self.state)
        self._events.put_nowait(JobEvent(kind, data))

    async def _control(self, command: Literal["stop", "cancel"]) -> None:
        if self._link is None:
            raise RemoteError("not_connected", "the job is not connected to a worker yet")
        await self._link.send(Control(job_id=self.job_id, command=command, owner=self.owner))
        self._emit("status", state="stopping" if command == "stop" else "cancelling", message=f"{command} requested")

    async def _run(self) -> JobOutcome:
        try:
            await self._start_record()
            try:
                outcome = await self._session()
            except (RemoteError, ConnectError, AuthError, TransferError, LinkClosedError, PeerLinkError):
                if not self._detached:
                    raise
                outcome = JobOutcome(self.job_id, self.kind, self.worker.peer_id if self.worker else "", detached=True)  # left running
            self._emit("result", outcome=outcome)
            return outcome
        except RemoteError as exc:
            err = cancelled_error(exc, cancel_requested=self.cancel_requested, queued=self.queue is not None, worker=self._worker_name())
            self._emit("error", code=err.code, message=err.message)
            if err is exc:
                raise
            raise err from None
        except (ConnectError, AuthError, TransferError) as exc:
            code = getattr(exc, "code", None) or getattr(exc, "stage", "connect")
            err = RemoteError(str(code), str(exc))
            self._emit("error", code=err.code, message=err.message)
            raise err from None
        except (LinkClosedError, PeerLinkError) as exc:
            err = await self._lost_link_error(exc)
            self._emit("error", code=err.code, message=err.message)
            raise err from None
        finally:
            if self._recorder is not None:
                await self._recorder.close()
            self._events.put_nowait(None)

    def _worker_name(self) -> str:
        return self.worker.name if self.worker is not None else ""

    async def _lost_link_error(self, exc: BaseException) -> RemoteError:
        """Worker lost (it left the room) or connection lost (it is still there), told apart by the coordinator."""
        if self.worker is None:
            return RemoteError("connection_lost", f"lost the connection before a worker took job {self.job_id} ({exc})")
        spec = self._spec.resolved(self._settings)
        probe = presence_probe(lambda: open_coordinator(spec), self.worker.peer_id)
        self._emit("status", state="checking", message=f"lost the connection to {self.worker.name}; asking the coordinator whether it is still online")
        wait = float(self._settings.get("server.heartbeat_timeout")) + 5.0
        return await lost_link_error(exc, probe, queued=self.queue is not None, worker=self.worker.name, job_id=self.job_id, wait_s=wait)

    async def _start_record(self) -> None:
        """Enter the job in the project's job list (or pick up its entry to attach)."""
        try:
            record = await asyncio.to_thread(self._make_record)
        except (OSError, ProtocolError) as exc:
            log.warning("job %s: not kept in the project's job list (%s)", self.job_id, exc)
            return
        if self.intent == "attach":
            with contextlib.suppress(ValueError):
                self.state = JobState(record.state)
        self._recorder = JobRecorder(self.jobs, record)
        self._recorder.observe("status", {}, self.state)

    def _make_record(self) -> JobRecord:
        known = self.jobs.get(self.job_id)
        if known is not None:
            known.finished, known.error_code = None, ""
            return known
        spec = self._spec
        record = JobRecord(job_id=self.job_id, kind=self.kind, options=dict(self.options),
                           inputs={k: str(v) for k, v in self.inputs.items()}, local_files={k: str(v) for k, v in self.local_files.items()},
                           queue=dict(vars(self.queue)) if self.queue is not None else None,
                           connection={k: getattr(spec, k) for k in ("server_url", "room_id", "worker_id", "auto_select", "min_gpu_memory_mb", "labels")})
        if self.package_path is not None and self.package_path.is_file():
            record.models = package_models(self.package_path)
            if self.intent == "submit":
                record.package = str(self.jobs.keep_package(self.job_id, self.package_path))
        return record

    async def _session(self) -> JobOutcome:
        spec = self._spec.resolved(self._settings)
        secret = secrets.lookup_secret(spec.room_id or "", explicit=spec.room_secret)
        await self._load_owner()
        if self.queue is not None:  # a new queued job, or --attach to one still in the queue
            return await queued_session(self, spec, secret)
        async with open_coordinator(spec) as coord:
            worker = await choose_worker(coord, spec)
            self.worker = worker
            self._emit("status", state="connecting", message=f"connecting to {worker.name}", worker=worker.peer_id, worker_name=worker.name)
            link = await self._open_link(coord, spec, worker.peer_id, self.intent)
        outcome = await self._over_link(link, worker, secret, self.intent)
        if self.intent == "attach" and not outcome.detached:
            with contextlib.suppress(RemoteError):
                async with open_coordinator(spec) as coord:
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
                kept: str | None = await asyncio.to_thread(store.get, self.job_id)
                self.owner = kept or ""
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
            await link.accept_files(incoming, cache_dir=self.project_dir / ".sleap-rtc" / "cache", partial_dir=self.project_dir / ".sleap-rtc" / "partial",
                              max_size=int(self._settings.get("transfer.max_file_mb", 20480)) * 2**20,
                              cache_max_bytes=cap_bytes(self._settings))
            await link.authenticate(secret)
            self._link_ready = True
            if intent == "attach":
                await link.send(Attach(job_id=self.job_id, owner=self.owner))
            if intent == "submit":
                if resume:
                    await hand_over_checkpoint(self, link)
                await self._send_package(link)
            return await self._follow(link, worker, incoming)
        finally:
            await link.close("job session over")
            if self._link is link:
                self._link, self._link_ready = None, False


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
                    for line in msg.line.split("\n"):  # a worker sends lines that arrived together in one frame
                        self._emit("log", line=line)
                elif isinstance(msg, JobStatus):
                    self._emit("status", state=msg.state, message=msg.message, **msg.detail)
                    if msg.state in ("failed", "cancelled"):
                        raise RemoteError(f"job_{msg.state}", msg.message or f"the job was {msg.state} on the worker")
                elif isinstance(msg, CheckpointNotice) and self._checkpoints is not None:
                    await keep_checkpoint(self, link, msg)
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


