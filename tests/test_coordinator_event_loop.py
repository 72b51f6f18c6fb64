"""The coordinator runs on uvloop where it is installed, on asyncio's loop when asked or
when uvloop is missing, and says which in its log."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import pytest

from sleap_rtc_plugin.config import load_settings
from sleap_rtc_plugin.coordinator import CoordinatorClient, create_room, runtime
from sleap_rtc_plugin.coordinator.cli import add_server_arguments, serve

pytest.importorskip("uvloop", reason="uvloop is not installed (the [server] extra)")


def server_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    args = parser.parse_args(list(argv))
    args.settings = load_settings(None, env={})
    return args


def test_auto_takes_uvloop_where_installed_and_asyncio_where_not(monkeypatch):
    assert runtime.resolve("auto") == "uvloop"
    assert runtime.resolve("asyncio") == "asyncio"
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert runtime.resolve("auto") == "asyncio"
    with pytest.raises(ValueError, match=r"uvloop is not installed: pip install 'sleap-rtc-plugin\[server\]'"):
        runtime.resolve("uvloop")
    with pytest.raises(ValueError, match="must be one of auto, uvloop, asyncio"):
        runtime.resolve("trio")


def test_asking_for_a_missing_uvloop_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert serve(server_args("--port", "0", "--db", ":memory:", "--event-loop", "uvloop")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: server.event_loop = 'uvloop' but uvloop is not installed"), err


def test_the_setting_follows_config_and_flag(tmp_path):
    config = tmp_path / "sleap-rtc.toml"
    config.write_text("[default.server]\nevent_loop = 'asyncio'\n")
    args = server_args()
    args.settings = load_settings(config, env={})
    from sleap_rtc_plugin.coordinator.cli import _server_settings

    assert _server_settings(args)["server.event_loop"] == "asyncio"
    args = server_args("--event-loop", "uvloop")
    args.settings = load_settings(config, env={})
    assert _server_settings(args)["server.event_loop"] == "uvloop"


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_the_coordinator_serves_peers_on_each_loop_and_stops_on_sigterm(loop):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sleap_rtc_plugin.coordinator", "--port", "0", "--db", ":memory:", "--event-loop", loop,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("coordinator listening on ws://127.0.0.1:"), line
        url = line.split()[-1]
        room_id, token, _ = await create_room(url)
        meta = {"gpus": [{"name": "sim", "memory_total_mb": 8192, "memory_free_mb": 8000}]}
        async with CoordinatorClient(url, room_id=room_id, token=token, role="worker", peer_id="w1", metadata=meta) as worker, \
                CoordinatorClient(url, room_id=room_id, token=token, role="client") as client:
            found = await client.discover(min_gpu_memory_mb=4096)
            assert [p.peer_id for p in found] == ["w1"]
            await client.relay("w1", "offer", {"sdp": "x" * 5000})
            relay = await worker.next_relay("offer", timeout=10)
            assert relay.source == client.peer_id and relay.payload == {"sdp": "x" * 5000}
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        err = (await proc.stderr.read()).decode()
        assert f"event loop: {loop}" in err, err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()



def test_a_standalone_coordinator_collects_garbage_less_often():
    """`sleap-rtc server` sets the thresholds before it serves; a worker's embedded
    coordinator does not touch its host process's collector."""
    import gc
    import subprocess

    code = (
        "import gc, sys\n"
        "from sleap_rtc_plugin.coordinator import cli, runtime\n"
        "def fake_run(main, loop):\n"
        "    main.close()\n"
        "    print(gc.get_threshold())\n"
        "    return 0\n"
        "runtime.run = fake_run\n"
        "sys.exit(cli.main(['--port', '0', '--db', ':memory:']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(runtime.GC_THRESHOLDS)
    assert gc.get_threshold() != runtime.GC_THRESHOLDS  # this (test) process was not touched
