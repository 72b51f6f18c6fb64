"""sd_notify over a real AF_UNIX datagram socket bound by the test."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid

import pytest

from sleap_rtc_plugin.util import sdnotify
from sleap_rtc_plugin.util.sdnotify import SdNotifier, WatchdogPinger, watchdog_interval


@pytest.fixture
def listener():
    folder = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # AF_UNIX paths are limited to 108 bytes
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(folder)


def _drain(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    out = []
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(5)
    return out


def test_noop_without_notify_socket(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False
    assert SdNotifier(env={}).watchdog() is False


def test_ready_status_stopping_via_env(listener, monkeypatch) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.ready("registered in room lab")
    assert sock.recv(4096) == b"READY=1\nSTATUS=registered in room lab"
    assert sdnotify.status("busy: training job 7\nsecond line")
    assert sock.recv(4096) == b"STATUS=busy: training job 7 second line"
    assert sdnotify.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_namespace_socket() -> None:
    name = f"sleap-rtc-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert SdNotifier(env={"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"


def test_unreachable_socket_does_not_raise(tmp_path) -> None:
    assert SdNotifier(address=str(tmp_path / "absent")).ready() is False


def test_watchdog_interval_is_half_and_pid_bound() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "120000000"}) == 60.0
    assert watchdog_interval({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": str(os.getpid())}) == 60.0
    assert watchdog_interval({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None


async def test_watchdog_pings_only_while_healthy(listener, monkeypatch) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # pings every 0.05 s
    healthy = {"ok": True}
    pinger = WatchdogPinger(lambda: healthy["ok"])
    assert pinger.interval == 0.05
    pinger.start()
    try:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, sock.recv, 4096) == b"WATCHDOG=1"
        assert await loop.run_in_executor(None, sock.recv, 4096) == b"WATCHDOG=1"

        healthy["ok"] = False
        await asyncio.sleep(0.2)  # any ping already in flight lands now
        _drain(sock)
        count = pinger.pings
        await asyncio.sleep(0.5)  # ten intervals while unhealthy
        assert _drain(sock) == []
        assert pinger.pings == count

        healthy["ok"] = True
        assert await loop.run_in_executor(None, sock.recv, 4096) == b"WATCHDOG=1"
    finally:
        await pinger.stop()


async def test_pinger_idle_without_watchdog(monkeypatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    pinger = WatchdogPinger(lambda: True)
    assert pinger.start() is None
    await pinger.stop()


async def test_raising_health_check_counts_as_unhealthy(listener) -> None:
    sock, path = listener

    def broken() -> bool:
        raise RuntimeError("boom")

    pinger = WatchdogPinger(broken, interval=0.02, notifier=SdNotifier(address=path))
    pinger.start()
    await asyncio.sleep(0.2)
    await pinger.stop()
    assert pinger.pings == 0 and _drain(sock) == []
