"""Real coordinator + real in-process workers for end-to-end client/worker tests.

Workers run the real agent (coordinator registration, aiortc links, PSK auth, real
sleap-nn subprocesses); only NVML is replaced when a test needs GPUs to advertise.
Import the fixtures by name, as the other fixture modules are.
"""

from __future__ import annotations

import functools
import secrets
from pathlib import Path

import pytest

from fixtures_coordinator import coordinator, room  # noqa: F401
from fixtures_data import sample_labels, sample_root, trained_model, training_package  # noqa: F401
from sleap_rtc_plugin.client.api import ConnectionSpec
from sleap_rtc_plugin.peer.secrets import env_var_name
from sleap_rtc_plugin.protocol.session_string import SessionString
from sleap_rtc_plugin.worker.agent import Worker, WorkerOptions
from sleap_rtc_plugin.worker.gpu import capabilities


@pytest.fixture
async def make_worker(coordinator, room, tmp_path, monkeypatch):  # noqa: F811
    """Factory: ``await make_worker(name, gpus=fake_nvml or None, secret=None, labels={}, insecure=False)``.

    Secure by default, as a lab sets it up: without ``secret`` the worker uses the room's
    secret, which this fixture puts where every client in the process finds it (the
    ``SLEAP_RTC_ROOM_SECRET_<ROOM>`` variable) and which its session string carries.
    ``insecure=True``: no secret at all (legacy mode), for tests about that mode.
    """
    workers: list[Worker] = []
    room_id, token = room
    room_secret = "room-secret-" + secrets.token_hex(8)
    monkeypatch.setenv(env_var_name(room_id), room_secret)

    async def start(name: str = "w", *, gpus=None, secret: str | None = None, labels: dict | None = None, probe=None, data_dir=None,
                    insecure: bool = False, **options) -> Worker:
        probe = probe or (functools.partial(capabilities, nvml=gpus) if gpus is not None else capabilities)
        if insecure:
            monkeypatch.delenv(env_var_name(room_id), raising=False)
        worker = Worker(
            WorkerOptions(
                server_url=coordinator.url, room_id=room_id, token=token, room_secret=secret, name=name, insecure_no_secret=insecure,
                labels=labels or {}, data_dir=data_dir or tmp_path / f"worker-{name}", status_port=0, ice_loopback=True,
                cancel_grace=5.0, **options,
            ),
            probe=probe,
        )
        await worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        await worker.stop()


@pytest.fixture
async def cpu_worker(make_worker):
    return await make_worker("cpu-worker")


@pytest.fixture
def project(tmp_path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


def spec_for(worker: Worker, *, with_secret: bool = True, **kw) -> ConnectionSpec:
    """A client spec from the worker's session string (``with_secret=False``: the string minus the room secret)."""
    session = worker.session_string()
    if not with_secret:
        session = SessionString.decode(session).without_secret().encode()
    return ConnectionSpec(session_string=session, ice_loopback=True, **kw)


class WorkerProcess:
    """``sleap-rtc worker`` as a user starts it: a subprocess with an embedded coordinator."""

    def __init__(self, data_dir: Path, *extra: str, env: dict | None = None):
        import os
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sleap_rtc_plugin", "worker", "--port", "0", "--status-port", "0", "--data-dir", str(data_dir), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            env={**os.environ, "SLEAP_RTC_ICE_LOOPBACK": "1", **(env or {})},
        )
        self.output: list[str] = []
        self.session_string = self.status_url = self.server_url = self.room_id = None
        self.session_file: Path | None = None
        for line in self.proc.stdout:
            self.output.append(line)
            text = line.strip()
            if "--session-string" in text and "sleap-session:" in text:
                self.session_string = text.split("--session-string", 1)[1].split()[0]
            elif text.startswith("session file:"):
                self.session_file = Path(text.split(":", 1)[1].strip())
                self.session_string = self.session_file.read_text().strip()
            elif text.startswith("status:"):
                self.status_url = text.split()[1]
            elif text.startswith("coordinator:"):
                self.server_url = text.split()[1]
            elif text.startswith("room id:"):
                self.room_id = text.split()[2]
            if self.session_string:
                break
        if not self.session_string:
            self.proc.kill()
            raise RuntimeError("worker did not start:\n" + "".join(self.output))
        import threading

        self._drain = threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True)
        self._drain.start()  # a full pipe would block the worker's logging

    @property
    def status_port(self) -> int:
        return int(self.status_url.rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def worker_process(tmp_path):
    worker = WorkerProcess(tmp_path / "worker-data")
    yield worker
    worker.stop()


async def collect(handle, *, until=None):
    """Drain a handle's events; call ``until(event)`` and stop draining (not the job) when it returns True."""
    events = []
    async for event in handle.events():
        events.append(event)
        if until is not None and until(event):
            break
    return events


def first_epoch(event) -> bool:
    return event.kind == "progress" and event.data.get("event") == "epoch_end"
