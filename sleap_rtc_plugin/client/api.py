"""The submitting side as a library: one code path for the CLI and the SLEAP GUI.

``submit_training`` / ``submit_inference`` / ``attach`` return a :class:`JobHandle`
at once and do the work in a task on the running event loop (asyncio under the CLI,
qasync under SLEAP's Qt loop): find the worker through the coordinator, open the
WebRTC link, authenticate, send the package, relay progress, fetch the results into
the project, and acknowledge them so the worker can empty its outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from ..protocol.peer import Control, JobResult, JobStatus, JobSubmit, Log, PeerError, Progress, ResultAck, ResultReleased
from ..protocol.session_string import SessionString
from .results import install_results
from .selection import WorkerInfo, auto_select, matches
from .zmq_bridge import LossViewerBridge

log = logging.getLogger(__name__)

DEFAULT_SERVER = "ws://127.0.0.1:8765"
EventKind = Literal["status", "transfer", "progress", "log", "result", "error"]


class RemoteError(Exception):
    """A remote job could not be done; ``code`` is stable, ``str()`` says what to do next."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


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
    ):
        self.kind = kind
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
        """Kill the remote job; nothing is returned."""
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
        await self._link.send(Control(job_id=self.job_id, command=command))
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
        async with _coordinator(spec) as coord:
            worker = await self._choose_worker(coord, spec)
            self.worker = worker
            self._emit("status", state="connecting", message=f"connecting to {worker.name}", worker=worker.peer_id)

            async def send_offer(offer: dict) -> dict:
                await coord.relay(worker.peer_id, "offer", {"offer": offer, "intent": self.intent, "job_id": self.job_id})
                try:
                    answer = await coord.next_relay(kind="answer", source=worker.peer_id)
                except RelayRejected as exc:
                    raise RemoteError(exc.code, exc.message) from None
                return answer.payload

            link = await connect(
                send_offer,
                ice_servers=spec.ice_servers or [],
                timeout=spec.timeout,
                role="client",
                peer_id=coord.peer_id or "",
                allow_loopback=spec.ice_loopback,
                fastpaths=FastPaths.from_settings(self._settings),
            )
        self._link = link
        try:
            await link.authenticate(secret)
            incoming = self.project_dir / ".sleap-rtc" / "incoming" / self.job_id
            link.accept_files(incoming, cache_dir=self.project_dir / ".sleap-rtc" / "cache",
                              max_size=int(self._settings.get("transfer.max_file_mb", 20480)) * 2**20,
                              cache_max_bytes=int(self._settings.get("transfer.cache_mb", 10240)) * 2**20)
            if self.intent == "submit":
                await self._send_package(link)
            return await self._follow(link, worker, incoming)
        finally:
            await link.close("job session over")

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
        assert self.package_path is not None
        if not self.package_path.is_file():
            raise RemoteError("no_package", f"package {self.package_path} does not exist")
        total = self.package_path.stat().st_size
        loop = asyncio.get_running_loop()
        started = loop.time()

        def progress(done: int, size: int) -> None:
            elapsed = max(loop.time() - started, 1e-6)
            self._emit("transfer", direction="upload", name=self.package_path.name, done=done, sent=done, total=size, rate_mbps=done / elapsed / 1e6)

        self._emit("status", state="transferring", message=f"sending {self.package_path.name} ({total / 1e6:.1f} MB)")
        sent = await link.send_file(self.package_path, name=self.package_path.name, progress=progress)
        self._emit("status", state="transferred", message=f"sent {sent.summary()}", via=sent.via)
        log.info("job %s: sent %s", self.job_id, sent.summary())
        await link.send(
            JobSubmit(job_id=self.job_id, kind=self.kind, package_sha256=sent.sha256, package_name=self.package_path.name, options=self.options)
        )

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
                elif isinstance(msg, JobResult):
                    return await self._fetch_results(link, worker, msg, incoming)
                elif isinstance(msg, PeerError):
                    raise RemoteError(msg.code, msg.message)
        finally:
            if bridge is not None:
                await bridge.close()

    async def _fetch_results(self, link, worker: WorkerInfo, result: JobResult, incoming: Path) -> JobOutcome:
        received = []
        for expected in result.files:
            self._emit("status", state="receiving", message=f"receiving {expected.name} ({expected.size / 1e6:.1f} MB)")
            got = await link.receive_file(timeout=max(60.0, expected.size / 1e6))
            if got.sha256 != expected.sha256:
                raise RemoteError("result_mismatch", f"received {got.name} does not match the announced hash; run --attach {self.job_id} to fetch it again")
            received.append((expected, Path(got.path)))
        outcome = await asyncio.to_thread(install_results, received, self.project_dir, self.job_id, self.kind, worker.peer_id)
        await link.send(ResultAck(job_id=self.job_id))
        try:
            async with asyncio.timeout(15):
                while not isinstance(msg := await link.recv(), ResultReleased):
                    log.debug("job %s: ignoring %s while waiting for result_released", self.job_id, msg.TYPE)
        except (TimeoutError, PeerLinkError):
            log.warning("job %s: the worker did not confirm the acknowledgement; it keeps the results in its outbox", self.job_id)
        return outcome


def submit_training(
    package_path: Path,
    spec: ConnectionSpec,
    *,
    project_dir: Path,
    publish_port: int | None = None,
    controller_port: int | None = None,
    options: dict[str, Any] | None = None,
) -> JobHandle:
    """Train remotely. Must be called with an event loop running."""
    return JobHandle("train", spec, project_dir=project_dir, package_path=package_path,
                     publish_port=publish_port, controller_port=controller_port, options=options)


def submit_inference(package_path: Path, spec: ConnectionSpec, *, project_dir: Path, options: dict[str, Any] | None = None) -> JobHandle:
    """Predict remotely; predictions land under ``<project_dir>/predictions/``."""
    return JobHandle("track", spec, project_dir=project_dir, package_path=package_path, options=options)


def attach(job_id: str, spec: ConnectionSpec, *, project_dir: Path, kind: Literal["train", "track"] = "train",
           publish_port: int | None = None, controller_port: int | None = None) -> JobHandle:
    """Reconnect to a job submitted earlier: follow its progress and fetch its results."""
    return JobHandle(kind, spec, project_dir=project_dir, package_path=None, job_id=job_id, intent="attach",
                     publish_port=publish_port, controller_port=controller_port)


__all__ = ["ConnectionSpec", "JobEvent", "JobHandle", "JobOutcome", "RemoteError", "WorkerInfo", "attach", "list_workers",
           "submit_inference", "submit_training"]
