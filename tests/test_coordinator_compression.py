"""``server.compression``: permessage-deflate only when the operator asks for it.

zlib was the largest CPU cost of a discover reply, and frames carrying relayed SDP
secrets beside peer-chosen text should not share a compression context, so the
default declines the extension every websockets client offers.
"""

from __future__ import annotations

from websockets.asyncio.client import connect

from sleap_rtc_plugin.config import default, load_settings
from sleap_rtc_plugin.coordinator import CoordinatorServer
from sleap_rtc_plugin.coordinator.cli import _server_settings, add_server_arguments


async def _extensions(tmp_path, **kw) -> str | None:
    async with CoordinatorServer("127.0.0.1", 0, tmp_path / "c.sqlite3", heartbeat_interval=0.3, heartbeat_timeout=1.5, **kw) as server:
        async with connect(server.url, ping_interval=None) as ws:  # offers permessage-deflate
            assert ws.response is not None
            return ws.response.headers.get("Sec-WebSocket-Extensions")


async def test_the_coordinator_declines_compression_by_default(tmp_path):
    assert default("server.compression") is False
    assert await _extensions(tmp_path) is None


async def test_compression_is_negotiated_when_turned_on(tmp_path):
    assert "permessage-deflate" in (await _extensions(tmp_path, compression=True) or "")


def test_the_compression_flag_overrides_the_setting(tmp_path, monkeypatch):
    import argparse

    monkeypatch.setenv("SLEAP_RTC_CONFIG", str(tmp_path / "empty.toml"))
    (tmp_path / "empty.toml").write_text("")
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    settings = load_settings()
    assert _server_settings(_with(parser.parse_args([]), settings))["server.compression"] is False
    assert _server_settings(_with(parser.parse_args(["--compression"]), settings))["server.compression"] is True
    monkeypatch.setenv("SLEAP_RTC_SERVER_COMPRESSION", "true")
    assert _server_settings(_with(parser.parse_args([]), load_settings()))["server.compression"] is True
    assert _server_settings(_with(parser.parse_args(["--no-compression"]), load_settings()))["server.compression"] is False


def _with(args, settings):
    args.settings = settings
    return args
