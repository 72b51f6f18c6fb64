"""How a worker is set up: :class:`WorkerOptions`, from the settings or from code.

Its own module, low in the worker layer, so the parts of the worker that read the
options (link server, job session, queue attempt) need not import :mod:`.agent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings, default, user_data_dir
from ..peer.fastpath import FastPaths
from .slurm.factory import executor_factory

#: Seconds a client's link has, from its offer, to authenticate (``worker.preauth_timeout``).
DEFAULT_PREAUTH_TIMEOUT: float = default("worker.preauth_timeout")


@dataclass
class WorkerOptions:
    server_url: str | None = None
    room_id: str | None = None
    token: str | None = None
    room_secret: str | None = None
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    data_dir: Path = field(default_factory=lambda: user_data_dir() / "worker")
    status_port: int | None = default("worker.status_port")
    ice_servers: list[Any] = field(default_factory=list)
    ice_loopback: bool = False
    cancel_grace: float = 10.0
    max_file_bytes: int = 20 * 1024**3
    max_unpacked_bytes: int = 20 * 1024**3
    cache_max_bytes: int = 10 * 1024**3
    fastpaths: FastPaths = field(default_factory=FastPaths)
    embedded_host: str = "127.0.0.1"
    embedded_port: int = default("server.port")
    embedded_db: str | None = None
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 30.0
    checkpoint_interval: float = 60.0
    capabilities_refresh: float = 60.0
    report_patience: float = 300.0
    preauth_timeout: float = DEFAULT_PREAUTH_TIMEOUT
    insecure_no_secret: bool = False
    #: Where jobs run (``worker.executor``): None = local child processes; see worker/slurm/.
    executor_factory: Any = None

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
            embedded_port=int(settings.get("server.port", default("server.port"))),
            embedded_db=settings.get("server.db"),
            heartbeat_interval=float(settings.get("server.heartbeat_interval", 10.0)),
            heartbeat_timeout=float(settings.get("server.heartbeat_timeout", 30.0)),
            checkpoint_interval=float(settings.get("worker.checkpoint_interval", 60.0)),
            preauth_timeout=float(settings.get("worker.preauth_timeout", DEFAULT_PREAUTH_TIMEOUT)),
            insecure_no_secret=bool(settings.get("worker.insecure_no_secret", False)),
            executor_factory=executor_factory(settings),
        )
