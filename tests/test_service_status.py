"""`sleap-rtc-service status` against a real process serving the worker's status endpoint.

systemd as PID 1 is not available here, so the OS half (``systemctl show``) is answered
through the runner seam; the worker half is a real ``StatusServer`` in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sleap_rtc_plugin.service.cli import main
from sleap_rtc_plugin.service.system_commands import RecordingRunner
from sleap_rtc_plugin.util.status_server import StatusServer

SERVER_SCRIPT = r"""
import asyncio, json, sys
from sleap_rtc_plugin.util.status_server import StatusServer

snapshot_file = sys.argv[1]

async def main():
    server = StatusServer(lambda: json.load(open(snapshot_file)), port=0)
    await server.start()
    print(server.port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

SNAPSHOT = {
    "coordinator": {"connected": True, "url": "ws://coordinator.lab:8765"},
    "room_id": "lab1",
    "peer_id": "worker-gpu0-3f2a",
    "status": "busy",
    "job": {"id": "job-17", "kind": "train", "progress": {"epoch": 3, "epochs": 50, "loss": 0.01234}},
    "gpus": [{"index": 0, "name": "NVIDIA A100", "memory_total_mb": 81920}],
    "last_error": None,
}


@pytest.fixture
def worker_endpoint(tmp_path: Path):
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps(SNAPSHOT))
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(snap)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield proc, port, snap
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _systemctl(active: str, sub: str, restarts: int = 2):
    def respond(argv: list[str]):
        if argv[:2] == ["systemctl", "show"]:
            out = (
                f"LoadState=loaded\nActiveState={active}\nSubState={sub}\n"
                f"ActiveEnterTimestamp=Sun 2025-11-23 13:22:00 UTC\nNRestarts={restarts}\n"
                f"UnitFileState=enabled\nMainPID={4242 if active == 'active' else 0}\n"
            )
            return subprocess.CompletedProcess(argv, 0, out, "")
        return None

    return RecordingRunner(respond)


def _installed_root(tmp_path: Path, port: int) -> Path:
    root = tmp_path / "root"
    assert main(["install", "--root", str(root), "--status-port", str(port), "--no-start"], runner=RecordingRunner()) == 0
    return root


def test_status_running_and_connected(worker_endpoint, tmp_path, capsys) -> None:
    proc, port, _ = worker_endpoint
    root = _installed_root(tmp_path, port)  # the port comes from the installed config file
    capsys.readouterr()
    runner = _systemctl("active", "running")
    assert main(["status", "--root", str(root)], runner=runner) == 0
    table = capsys.readouterr().out
    assert "coordinator  connected  ws://coordinator.lab:8765" in table
    assert "train job-17 (epoch 3/50, loss 0.01234)" in table
    assert "0: NVIDIA A100 80 GiB" in table
    assert f"pid {proc.pid}" in table
    assert "RUNNING (exit 0)" in table
    assert ["systemctl", "show", "sleap-rtc-worker.service"] == runner.calls[0][:3]

    assert main(["status", "--json", "--root", str(root)], runner=_systemctl("active", "running")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1 and doc["exit_code"] == 0 and doc["health"] == "running"
    unit = doc["units"][0]
    assert unit["service"]["restarts"] == 2 and unit["service"]["main_pid"] == 4242
    assert unit["service"]["enabled"] == "enabled"
    assert unit["worker"]["pid"] == proc.pid and unit["worker"]["job"]["id"] == "job-17"
    assert unit["endpoint"] == {"url": f"http://127.0.0.1:{port}/status", "reachable": True, "error": None}


def test_status_not_connected_is_2(worker_endpoint, tmp_path, capsys) -> None:
    _, port, snap = worker_endpoint
    snap.write_text(json.dumps({**SNAPSHOT, "coordinator": {"connected": False, "url": "ws://c:1"}, "last_error": "connection refused"}))
    root = _installed_root(tmp_path, port)
    capsys.readouterr()
    assert main(["status", "--root", str(root)], runner=_systemctl("active", "running")) == 2
    out = capsys.readouterr().out
    assert "NOT connected" in out and "not connected to the coordinator at ws://c:1" in out
    assert "last error: connection refused" in out


def test_status_endpoint_unreachable_is_2(worker_endpoint, tmp_path, capsys) -> None:
    proc, port, _ = worker_endpoint
    proc.kill()
    proc.wait(timeout=30)
    root = _installed_root(tmp_path, port)
    capsys.readouterr()
    assert main(["status", "--json", "--root", str(root)], runner=_systemctl("active", "running")) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["units"][0]["endpoint"]["reachable"] is False and doc["units"][0]["worker"] is None


def test_status_stopped_is_3(worker_endpoint, tmp_path, capsys) -> None:
    _, port, _ = worker_endpoint
    root = _installed_root(tmp_path, port)
    capsys.readouterr()
    assert main(["status", "--root", str(root)], runner=_systemctl("failed", "failed")) == 3
    assert "sleap-rtc-worker.service is failed (failed)" in capsys.readouterr().out


def test_status_not_installed_is_4(tmp_path, capsys) -> None:
    runner = RecordingRunner(lambda a: subprocess.CompletedProcess(a, 0, "LoadState=not-found\nActiveState=inactive\n", ""))
    assert main(["status", "--root", str(tmp_path)], runner=runner) == 4
    assert "not installed" in capsys.readouterr().out


def test_status_without_service_manager(worker_endpoint, capsys) -> None:
    _, port, _ = worker_endpoint
    runner = RecordingRunner()
    assert main(["status", "--no-service", "--port", str(port), "--json"], runner=runner) == 0
    assert runner.calls == []
    assert json.loads(capsys.readouterr().out)["units"][0]["service"] is None


def test_status_per_gpu_instances_use_their_own_ports(worker_endpoint, tmp_path, capsys) -> None:
    """Template install: GPU 0 gets the first port (our live server), GPU 1 the next (nothing there)."""
    _, port, _ = worker_endpoint
    root = tmp_path / "root"
    assert main(["install", "--root", str(root), "--gpus", "0,1", "--status-port", str(port), "--no-start"], runner=RecordingRunner()) == 0
    capsys.readouterr()
    runner = _systemctl("active", "running")
    assert main(["status", "--json", "--root", str(root)], runner=runner) == 2
    doc = json.loads(capsys.readouterr().out)
    assert [u["service"]["unit"] for u in doc["units"]] == ["sleap-rtc-worker@0.service", "sleap-rtc-worker@1.service"]
    assert [u["exit_code"] for u in doc["units"]] == [0, 2]
    assert doc["units"][1]["endpoint"]["url"].endswith(f":{port + 1}/status")


async def test_status_server_http_edges() -> None:
    calls = {"n": 0}

    def snapshot() -> dict:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("snapshot broke")
        return {"status": "available"}

    async with StatusServer(snapshot, port=0) as server:
        assert server.port and server.port > 0
        url = f"http://127.0.0.1:{server.port}"

        def get(path: str, method: str = "GET") -> tuple[int, dict]:
            request = urllib.request.Request(url + path, method=method)
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    return r.status, json.loads(r.read() or b"{}")
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read() or b"{}")

        import asyncio

        code, body = await asyncio.to_thread(get, "/status")
        assert code == 200 and body["status"] == "available" and body["pid"] > 0 and "version" in body
        assert abs(body["started_at"] - time.time()) < 3600
        code, body = await asyncio.to_thread(get, "/status")
        assert code == 500 and "snapshot broke" in body["error"]
        assert (await asyncio.to_thread(get, "/nope"))[0] == 404
        assert (await asyncio.to_thread(get, "/status", "POST"))[0] == 405
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"garbage\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 400")
        writer.close()
        code, _ = await asyncio.to_thread(get, "/status")  # still serving after bad input
        assert code == 200
