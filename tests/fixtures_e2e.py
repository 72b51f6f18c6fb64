"""Real coordinator + real in-process workers for end-to-end client/worker tests.

Workers run the real agent (coordinator registration, aiortc links, PSK auth, real
sleap-nn subprocesses); only NVML is replaced when a test needs GPUs to advertise.
Import the fixtures by name, as the other fixture modules are.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from fixtures_coordinator import coordinator, room  # noqa: F401
from fixtures_data import sample_labels, sample_root, trained_model, training_package  # noqa: F401
from sleap_rtc_plugin.client.api import ConnectionSpec
from sleap_rtc_plugin.worker.agent import Worker, WorkerOptions
from sleap_rtc_plugin.worker.gpu import capabilities


@pytest.fixture
async def make_worker(coordinator, room, tmp_path):  # noqa: F811
    """Factory: ``await make_worker(name, gpus=fake_nvml or None, secret=None, labels={})``."""
    workers: list[Worker] = []
    room_id, token = room

    async def start(name: str = "w", *, gpus=None, secret: str | None = None, labels: dict | None = None) -> Worker:
        probe = functools.partial(capabilities, nvml=gpus) if gpus is not None else capabilities
        worker = Worker(
            WorkerOptions(
                server_url=coordinator.url, room_id=room_id, token=token, room_secret=secret, name=name,
                labels=labels or {}, data_dir=tmp_path / f"worker-{name}", status_port=0, ice_loopback=True,
                cancel_grace=5.0,
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


def spec_for(worker: Worker, **kw) -> ConnectionSpec:
    return ConnectionSpec(session_string=worker.session_string(), ice_loopback=True, **kw)
