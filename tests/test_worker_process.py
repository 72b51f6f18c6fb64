"""`sleap-rtc worker` as lab IT runs it, and `sleap-rtc-service status` reading its live state."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest

from fixtures_e2e import WorkerProcess, spec_for, worker_process  # noqa: F401
from fixtures_data import sample_labels, sample_root  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import ConnectionSpec, submit_training


def service_status(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sleap_rtc_plugin.service.cli", "status", "--no-service", "--port", str(port), *args],
        capture_output=True, text=True, timeout=60,
    )


def test_worker_without_coordinator_embeds_one_and_prints_how_to_connect(worker_process):  # noqa: F811
    text = "".join(worker_process.output)
    assert worker_process.server_url.startswith("ws://127.0.0.1:")
    assert "(embedded in this worker)" in text
    assert worker_process.session_string.startswith("sleap-session:")
    assert "room token:" in text and worker_process.room_id


def test_service_status_reports_a_live_idle_worker(worker_process):  # noqa: F811
    out = service_status(worker_process.status_port, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    worker = json.dumps(data)
    assert '"available"' in worker and worker_process.room_id in worker
    table = service_status(worker_process.status_port)
    assert table.returncode == 0 and "available" in table.stdout


@pytest.mark.slow
async def test_service_status_shows_the_running_job_and_its_progress(worker_process, sample_labels, tmp_path):  # noqa: F811
    package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=200)
    spec = ConnectionSpec(session_string=worker_process.session_string, ice_loopback=True)
    handle = submit_training(package, spec, project_dir=tmp_path / "project")
    async for event in handle.events():
        if event.kind == "progress" and event.data.get("event") == "epoch_end":
            break
    out = await asyncio.to_thread(service_status, worker_process.status_port, "--json")
    data = json.loads(out.stdout)
    assert out.returncode == 0, out.stdout
    (unit,) = data["units"]
    assert unit["worker"]["status"] == "busy"
    job = unit["worker"]["job"]
    assert job["id"] == handle.job_id and job["state"] == "running"
    assert job["summary"].startswith("single_instance, epoch ") and job["summary"].endswith("/200")
    await handle.cancel()
    with pytest.raises(Exception):  # noqa: B017 - any failure will do: the point is that no result comes back
        await handle.result()


def test_worker_stops_cleanly_on_sigterm(tmp_path):
    worker = WorkerProcess(tmp_path / "data")
    assert worker.stop() == 0
    text = "".join(worker.output)
    assert "Traceback" not in text and "shutting down" in text


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
async def test_sleap_nn_dies_with_a_killed_worker(sample_labels, tmp_path):  # noqa: F811
    worker = WorkerProcess(tmp_path / "data")
    try:
        package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=200)
        spec = ConnectionSpec(session_string=worker.session_string, ice_loopback=True)
        handle = submit_training(package, spec, project_dir=tmp_path / "project")
        async for event in handle.events():
            if event.kind == "progress" and event.data.get("event") == "epoch_end":
                break
        trainers = [p for p in _children(worker.proc.pid) if "sleap_nn.cli" in open(f"/proc/{p}/cmdline").read()]
        assert len(trainers) == 1
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(30)
        for _ in range(100):
            if not _alive(trainers[0]):
                break
            await asyncio.sleep(0.1)
        assert not _alive(trainers[0]), "sleap-nn outlived its SIGKILLed worker"
        with pytest.raises(Exception):  # noqa: B017 - any failure will do: the point is that no result comes back
            await asyncio.wait_for(handle.result(), 120)
    finally:
        worker.stop()
