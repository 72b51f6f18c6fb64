"""Where a job runs: the connection spec, queue options, and talking to the coordinator.

Everything here is shared by the direct and the queued job paths and by worker listing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from ..config import SETTINGS, Settings, load_settings
from ..coordinator.client import CoordinatorClient, CoordinatorError
from ..protocol import ProtocolError
from ..protocol.session_string import SessionString
from .errors import RemoteError
from .selection import WorkerInfo, auto_select, matches

#: A coordinator on this machine, on the configured default port (a worker's embedded one).
DEFAULT_SERVER = f"ws://127.0.0.1:{SETTINGS['server.port'].default}"


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


async def list_workers(spec: ConnectionSpec, *, include_busy: bool = True) -> list[WorkerInfo]:
    """Workers in the spec's room that pass its filters, most free GPU memory first."""
    spec = spec.resolved()
    async with open_coordinator(spec) as coord:
        return await discover(coord, spec, include_busy=include_busy)


async def discover(coord: CoordinatorClient, spec: ConnectionSpec, *, include_busy: bool = True) -> list[WorkerInfo]:
    peers = await coord.discover(role="worker", labels=spec.labels or None)
    workers = [WorkerInfo.from_peer(p) for p in peers]
    workers = [w for w in workers if matches(w, min_gpu_memory_mb=spec.min_gpu_memory_mb, labels=spec.labels)]
    if not include_busy:
        workers = [w for w in workers if w.status == "available"]
    return sorted(workers, key=lambda w: (-w.gpu_memory_free_mb, w.name))


@contextlib.asynccontextmanager
async def open_coordinator(spec: ConnectionSpec) -> AsyncIterator[CoordinatorClient]:
    assert spec.server_url and spec.room_id and spec.token
    coord = CoordinatorClient(spec.server_url, room_id=spec.room_id, token=spec.token, role="client", reconnect=False)
    try:
        await coord.start()
    except CoordinatorError as exc:
        raise RemoteError(exc.code, coordinator_hint(exc, spec.server_url)) from None
    try:
        yield coord
    finally:
        await coord.close()


def coordinator_hint(exc: CoordinatorError, url: str) -> str:
    if exc.code == "unreachable":
        return f"cannot reach the coordinator at {url}; is `sleap-rtc server` (or a worker with an embedded one) running there?"
    if exc.code in ("bad_token", "unknown_room"):
        return f"the coordinator refused the room credentials ({exc.message}); copy the room id and token (or session string) again from the worker"
    if exc.code == "room_expired":
        return "the room has expired; ask for a new room (`sleap-rtc room create`) and restart the worker with it"
    return exc.message


async def choose_worker(coord: CoordinatorClient, spec: ConnectionSpec) -> WorkerInfo:
    workers = await discover(coord, spec)
    if spec.worker_id:
        for w in workers:
            if w.peer_id == spec.worker_id:
                return w
        raise RemoteError("no_worker", f"worker {spec.worker_id} is not in the room (or does not match the filters); is it running? `sleap-rtc worker` prints its session string")
    if spec.auto_select or len(workers) == 1:
        chosen = auto_select(workers)
        if chosen is None and workers and all(w.status != "available" for w in workers):
            names = ", ".join(w.name for w in workers[:5])
            raise RemoteError("all_busy", f"every matching worker in room {spec.room_id} is busy ({names}); wait until one is available, or submit through the coordinator's queue")
        if chosen is None:
            what = "matching your filters " if (spec.min_gpu_memory_mb or spec.labels) else ""
            raise RemoteError("no_worker", f"no available worker {what}in room {spec.room_id}; start one with `sleap-rtc worker` or try again when one is free")
        return chosen
    if not workers:
        raise RemoteError("no_worker", f"no worker in room {spec.room_id}; start one with `sleap-rtc worker`")
    raise RemoteError("choose_worker", "several workers are available: pick one (worker id) or use auto-select")


async def worker_info(coord: CoordinatorClient, worker_id: str) -> WorkerInfo:
    with contextlib.suppress(CoordinatorError):
        for peer in await coord.discover(role="worker"):
            if peer.peer_id == worker_id:
                return WorkerInfo.from_peer(peer)
    return WorkerInfo(peer_id=worker_id, name=worker_id, hostname="", status="", accelerator="", gpu_name="",
                      gpu_memory_free_mb=0, gpu_memory_total_mb=0, gpu_count=0)

