"""The networked worker's presence: refreshed capabilities, and systemd readiness/watchdog."""

from __future__ import annotations

import asyncio
import socket

from fake_nvml import gpus
from fixtures_e2e import WorkerProcess, coordinator, make_worker, room  # noqa: F401
from sleap_rtc_plugin.client.api import ConnectionSpec, list_workers
from sleap_rtc_plugin.worker.gpu import capabilities


async def test_free_gpu_memory_is_republished(coordinator, room, make_worker):  # noqa: F811
    free = iter([8, 8, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30])
    worker = await make_worker("drifting", probe=lambda: capabilities(nvml=gpus(next(free, 30))), capabilities_refresh=0.2)
    spec = ConnectionSpec(server_url=coordinator.url, room_id=room[0], token=room[1])
    seen = []
    for _ in range(50):
        seen.append((await list_workers(spec))[0].gpu_memory_free_mb)
        if seen[-1] == 30 * 1024:
            break
        await asyncio.sleep(0.1)
    assert seen[0] == 8 * 1024 and seen[-1] == 30 * 1024
    assert worker.capabilities["gpus"][0]["memory_free_mb"] == 30 * 1024


def test_worker_service_notifies_ready_then_watchdog(tmp_path):
    """What a Type=notify unit with WatchdogSec= sees, on a real datagram socket."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(60)
    worker = WorkerProcess(tmp_path / "data", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    try:
        messages = []
        while not any("WATCHDOG=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
        assert ready < next(i for i, m in enumerate(messages) if "WATCHDOG=1" in m)
        assert "registered in room" in messages[ready]
    finally:
        assert worker.stop() == 0
        sock.settimeout(5)
        tail = []
        try:
            while True:
                tail.append(sock.recv(4096).decode())
        except OSError:
            pass
        sock.close()
    assert any("STOPPING=1" in m for m in tail)
