"""Fixtures for the kill -9 map (docs/queue.md): a package whose upload takes a moment,
transfers held to the plain data channel, and the coordinator as a subprocess (its
SQLite file in tmp) that a test can SIGKILL and start again on the same port and DB.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fixtures_queue_e2e import GRACE, LEASE, SECRET
from sleap_rtc_plugin.client.api import ConnectionSpec
from sleap_rtc_plugin.coordinator.jobstore import JobStore, QueuedJob
from sleap_rtc_plugin.coordinator.store import RoomStore


#: The subprocess coordinator's lease and grace: a worker's reconnect backoff reaches 30 s
#: (``CoordinatorClient.backoff_max``) during a long outage, so lease + grace stays above it
#: and a live worker never looks dead (these tests are about the coordinator dying, not the
#: worker); the production defaults are 60 s + 60 s.
COORD_LEASE, COORD_GRACE = 10.0, 40.0


def statuses(events, state: str) -> list[dict]:
    return [e.data for e in events if e.kind == "status" and e.data.get("state") == state]


def trained(events) -> list[int]:
    return [e.data["epoch"] for e in events if e.kind == "progress" and e.data.get("event") == "epoch_end"]


def is_state(state: str):
    return lambda e: e.kind == "status" and e.data.get("state") == state


def padded_package(package: Path, out_dir: Path, pad_mb: int) -> Path:
    """``package`` plus ``padding.bin`` (random, stored): an extra file the package format
    accepts and ignores, so the upload takes a while without changing the job."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / package.name
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        with dst.open(zipfile.ZipInfo("padding.bin"), "w") as f:
            for _ in range(pad_mb):
                f.write(os.urandom(2**20))
    return out


@pytest.fixture
def slow_transfers(monkeypatch):
    """Uploads over the plain data channel (no direct TLS stream, standard SCTP packets):
    a few MB/s on loopback, so a test can land a kill in the middle of one. Set before
    a client handle or a worker subprocess is made (both read it from the environment)."""
    monkeypatch.setenv("SLEAP_RTC_TRANSFER_DIRECT", "false")
    monkeypatch.setenv("SLEAP_RTC_TRANSFER_SCTP_TUNING", "false")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CoordinatorProcess:
    """``sleap-rtc server`` in its own process, on a fixed port and SQLite file, so it can
    be killed with SIGKILL (no clean-up at all) and started again on both."""

    def __init__(self, db: Path, port: int, log_path: Path, *, lease: float = LEASE, grace: float = GRACE):
        self.db, self.port, self.log_path = db, port, log_path
        self.argv = [sys.executable, "-m", "sleap_rtc_plugin", "server", "--port", str(port), "--db", str(db),
                     "--heartbeat-interval", "0.5", "--heartbeat-timeout", "6", "--lease-seconds", str(lease),
                     "--reconnect-grace", str(grace)]
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLEAP_RTC_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.db.parent)
        self.starts += 1
        async with asyncio.timeout(timeout):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"coordinator exited {self.proc.returncode}:\n{self.output()[-3000:]}")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                return

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


async def prepare_db(db: Path, workers: list[str]) -> tuple[tuple[str, str], dict[str, str]]:
    """A room and enrolled workers written straight into the coordinator's SQLite file (as
    ``sleap-rtc admin`` would), before the coordinator process starts."""
    store = RoomStore(db)
    await store.open()
    try:
        room_id, token, _ = await store.create_room()
        jobs = JobStore(store)
        await jobs.open()
        tokens = {name: await jobs.set_worker_token(room_id, name) for name in workers}
    finally:
        await store.close()
    return (room_id, token), tokens


async def read_job(db: Path, job_id: str) -> QueuedJob | None:
    """The job's row as the coordinator last committed it (its process may be dead)."""
    store = RoomStore(db)
    await store.open()
    try:
        jobs = JobStore(store)
        await jobs.open()
        return await jobs.get_job(job_id)
    finally:
        await store.close()


@pytest.fixture
async def coordinator_process(tmp_path):
    procs: list[CoordinatorProcess] = []

    def make(**kw) -> CoordinatorProcess:
        proc = CoordinatorProcess(tmp_path / "coordinator.sqlite3", free_port(), tmp_path / "coordinator.log", **kw)
        procs.append(proc)
        return proc

    yield make
    for proc in procs:
        proc.stop()


def spec_at(url: str, room: tuple[str, str]) -> ConnectionSpec:
    return ConnectionSpec(server_url=url, room_id=room[0], token=room[1], ice_loopback=True, room_secret=SECRET)
