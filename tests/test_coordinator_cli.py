"""`python -m sleap_rtc_plugin.coordinator` serves, creates rooms and stops cleanly on signals."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import pytest

from sleap_rtc_plugin.coordinator import CoordinatorClient
from sleap_rtc_plugin.coordinator.cli import add_room_arguments, add_server_arguments, run_room_async


def room_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_room_arguments(parser)
    return parser.parse_args(list(argv))


def test_server_defaults_to_loopback_and_follows_config_then_flags(tmp_path):
    from sleap_rtc_plugin.config import load_settings
    from sleap_rtc_plugin.coordinator.cli import _server_settings

    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    args = parser.parse_args([])
    args.settings = load_settings(None, env={})
    s = _server_settings(args)
    assert (s["server.host"], s["server.port"], s["server.db"]) == ("127.0.0.1", 8765, None)

    config = tmp_path / "sleap-rtc.toml"
    config.write_text("[default.server]\nhost = '0.0.0.0'\nport = 9100\n")
    args.settings = load_settings(config, env={})
    assert (_server_settings(args)["server.host"], _server_settings(args)["server.port"]) == ("0.0.0.0", 9100)
    args = parser.parse_args(["--port", "9200"])
    args.settings = load_settings(config, env={})
    s = _server_settings(args)
    assert (s["server.host"], s["server.port"], s.origins["server.port"]) == ("0.0.0.0", 9200, "command line")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_module_serves_and_stops_on_signal(tmp_path, capsys, sig):
    db = tmp_path / "cli.sqlite3"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sleap_rtc_plugin.coordinator", "--port", "0", "--db", str(db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("coordinator listening on ws://127.0.0.1:"), line
        url = line.split()[-1]
        assert await run_room_async(room_args("create", "--server", url, "--json")) == 0
        created = json.loads(capsys.readouterr().out)
        async with CoordinatorClient(url, room_id=created["room_id"], token=created["token"], role="worker") as worker:
            assert worker.connected
            proc.send_signal(sig)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
            await asyncio.sleep(0)
        stderr = (await proc.stderr.read()).decode()
        assert "coordinator stopped" in stderr and "Traceback" not in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_room_create_offline_into_a_db(tmp_path, capsys):
    db = tmp_path / "offline.sqlite3"
    assert await run_room_async(room_args("create", "--db", str(db), "--ttl-hours", "1")) == 0
    out = capsys.readouterr().out
    assert "room id:" in out and "token:" in out and "shown only now" in out
    assert db.exists()


async def test_room_create_unreachable_server_is_one_line_error(capsys):
    assert await run_room_async(room_args("create", "--server", "ws://127.0.0.1:9")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unreachable:") and err.count("\n") == 1
