"""Queue end-to-end fixtures: a coordinator with short leases, real workers (in-process
or as killable subprocesses running ``python -m sleap_rtc_plugin worker``), and a TCP
proxy that can cut a worker off the network for a while (a real blip, not a mock).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fixtures_queue import enroll, start_server
from sleap_rtc_plugin.client.api import ConnectionSpec
from sleap_rtc_plugin.worker.agent import Worker, WorkerOptions
from sleap_rtc_plugin.worker.gpu import capabilities

#: Short enough for tests, long enough that a loaded 2-core machine does not look dead.
LEASE = 3.0
GRACE = 4.0
SECRET = "queue-e2e secret"


async def start_coordinator(db: Path, port: int = 0, **kw: Any):
    kw.setdefault("heartbeat_interval", 0.5)
    kw.setdefault("heartbeat_timeout", 6.0)
    kw.setdefault("lease_seconds", LEASE)
    kw.setdefault("reconnect_grace", GRACE)
    return await start_server(db, port, **kw)


@pytest.fixture
async def qcoord(tmp_path):
    server = await start_coordinator(tmp_path / "coordinator.sqlite3")
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def qroom(qcoord):
    room_id, token, _ = await qcoord.create_room()
    return room_id, token


def client_spec(server_url: str, room: tuple[str, str], secret: str | None = SECRET) -> ConnectionSpec:
    return ConnectionSpec(server_url=server_url, room_id=room[0], token=room[1], ice_loopback=True, room_secret=secret)


@pytest.fixture
async def qworker(qcoord, qroom, tmp_path):
    """Factory for in-process workers: ``await qworker("w1", labels={...}, url=proxy.url)``.
    Each is enrolled with its own worker token (its peer id is its name), as a lab would."""
    workers: list[Worker] = []

    async def start(name: str, *, labels: dict | None = None, url: str | None = None, checkpoint_interval: float = 0.5,
                    gpus=None, secret: str | None = SECRET) -> Worker:
        probe = functools.partial(capabilities, nvml=gpus) if gpus is not None else capabilities
        worker = Worker(
            WorkerOptions(
                server_url=url or qcoord.url, room_id=qroom[0], token=await enroll(qcoord, qroom[0], name), room_secret=secret, name=name,
                labels=labels or {}, data_dir=tmp_path / f"worker-{name}", status_port=0, ice_loopback=True,
                cancel_grace=5.0, checkpoint_interval=checkpoint_interval,
            ),
            probe=probe,
        )
        await worker.start()
        worker.coordinator.backoff_initial, worker.coordinator.backoff_max = 0.2, 1.0
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        await worker.stop()


class WorkerProcess:
    """``python -m sleap_rtc_plugin worker`` in its own process, so a test can SIGKILL it."""

    def __init__(self, name: str, server_url: str, room: tuple[str, str], data_dir: Path, *, checkpoint_interval: float = 0.5,
                 labels: dict[str, str] | None = None, secret: str | None = SECRET):
        self.name = name
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{name}.log"
        argv = [sys.executable, "-m", "sleap_rtc_plugin", "worker", "--server", server_url, "--room-id", room[0],
                "--token", room[1], "--name", name, "--data-dir", str(data_dir), "--status-port", "0",
                "--checkpoint-interval", str(checkpoint_interval)]
        for key, value in (labels or {}).items():
            argv += ["--label", f"{key}={value}"]
        if secret is not None:
            argv += ["--room-secret", secret]
        home = data_dir.parent / f"{name}-home"
        env = {**os.environ, "SLEAP_RTC_ICE_LOOPBACK": "1", "XDG_CONFIG_HOME": str(home / "config"),
               "XDG_DATA_HOME": str(home / "data"), "PYTHONUNBUFFERED": "1"}
        env.pop("SLEAP_RTC_ENV", None)
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=data_dir.parent)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        """Pids whose parent is this worker (its sleap-nn process, in its own session)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
                if ppid == self.proc.pid:
                    found.append(int(entry.name))
        return found

    def kill9(self) -> None:
        """The machine dies: SIGKILL the worker and the sleap-nn process group it started."""
        children = self.children()
        self.proc.send_signal(signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()


@pytest.fixture
def worker_process(tmp_path):
    procs: list[WorkerProcess] = []

    def start(name: str, server_url: str, room: tuple[str, str], **kw: Any) -> WorkerProcess:
        proc = WorkerProcess(name, server_url, room, tmp_path / f"proc-{name}", **kw)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


class BlipProxy:
    """A TCP relay in front of the coordinator. ``cut()`` drops every connection through it
    and refuses new ones until ``restore()``: what a worker sees when its network blips."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = 0
        self.down = False
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        self.down = True
        for writer in list(self._writers):
            writer.transport.abort()

    def restore(self) -> None:
        self.down = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def split_by_attempt(events) -> dict[int, list]:
    """Events grouped by the attempt that was current when they arrived."""
    out: dict[int, list] = {0: []}
    attempt = 0
    for e in events:
        if e.kind == "status" and e.data.get("state") == "dispatched":
            attempt = e.data["attempt"]
            out.setdefault(attempt, [])
        out[attempt].append(e)
    return out


async def drain(handle, events: list, *, until=None):
    """Append a handle's events to ``events``; return the first one ``until`` accepts (None at the end)."""
    async for event in handle.events():
        events.append(event)
        if until is not None and until(event):
            return event
    return None


async def worker_peer(server, room_id: str, name: str, timeout: float = 120.0) -> str:
    """The peer id of the worker called ``name`` once it has registered."""
    async with asyncio.timeout(timeout):
        while True:
            for entry in server.presence.find(room_id, role="worker"):
                if entry.metadata.get("name") == name:
                    return entry.peer_id
            await asyncio.sleep(0.2)
