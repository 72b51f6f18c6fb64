"""TURN REST credentials: the coordinator hands each registered room member short-lived ones.

The password must be exactly what coturn computes from the shared secret
(``base64(HMAC-SHA1(secret, "<expiry>:<name>"))``); the real coturn check is in
tests/netlab (a relay allocated with these credentials).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from fixtures_coordinator import live_coordinator
from sleap_rtc_plugin.coordinator import CoordinatorClient
from sleap_rtc_plugin.coordinator.turn import TurnConfig, turn_credentials
from sleap_rtc_plugin.config import load_settings

SECRET = "shared-with-coturn"
URLS = ["turn:turn.lab.test:3478?transport=udp", "turns:turn.lab.test:443?transport=tcp"]


def coturn_password(username: str) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()


def test_credentials_follow_the_turn_rest_scheme():
    username, password, expiry = turn_credentials(SECRET, "peer-1", 600, now=1_000_000)
    assert (username, expiry) == ("1000600:peer-1", 1_000_600)
    assert password == coturn_password(username)


def test_turn_settings_come_from_config(monkeypatch):
    monkeypatch.setenv("SLEAP_RTC_SERVER_TURN_SECRET", SECRET)
    monkeypatch.setenv("SLEAP_RTC_SERVER_TURN_URLS", ",".join(URLS))
    monkeypatch.setenv("SLEAP_RTC_SERVER_TURN_TTL", "120")
    config = TurnConfig.from_settings(load_settings())
    assert (config.secret, config.urls, config.ttl, config.enabled) == (SECRET, URLS, 120.0, True)


async def test_registered_members_get_fresh_short_lived_credentials(tmp_path):
    server = live_coordinator(tmp_path)
    server.turn = TurnConfig(secret=SECRET, urls=URLS, ttl=600, stun_urls=["stun:turn.lab.test:3478"])
    async with server:
        room_id, token, _ = await server.create_room()
        async with CoordinatorClient(server.url, room_id=room_id, token=token, role="worker") as client:
            servers = await client.ice_servers(["stun:configured.example:3478"])
            turn = [s for s in servers if isinstance(s, dict) and s.get("username")]
            assert [s["urls"] for s in turn] == URLS
            username = turn[0]["username"]
            expiry, name = username.split(":", 1)
            assert name == client.peer_id and 590 <= int(expiry) - time.time() <= 610
            assert turn[0]["credential"] == coturn_password(username)
            assert {"urls": "stun:turn.lab.test:3478"} in servers and "stun:configured.example:3478" in servers

            # Credentials about to expire are refreshed before the next connection.
            client.coordinator_ice = (client.coordinator_ice[0], int(time.time()) + 10)
            fresh = [s for s in await client.ice_servers() if isinstance(s, dict) and s.get("username")]
            assert int(fresh[0]["username"].split(":")[0]) - time.time() >= 590
            assert fresh[0]["credential"] == coturn_password(fresh[0]["username"])


async def test_without_turn_config_peers_use_their_own_settings(tmp_path):
    async with live_coordinator(tmp_path) as server:
        room_id, token, _ = await server.create_room()
        async with CoordinatorClient(server.url, room_id=room_id, token=token, role="client") as client:
            assert client.coordinator_ice == (None, None)
            assert await client.ice_servers(["stun:mine:3478"]) == ["stun:mine:3478"]


def test_malformed_ice_servers_from_a_coordinator_are_dropped():
    from sleap_rtc_plugin.peer.ice_choice import normalize

    hostile = [{"urls": 5}, {"urls": "http://evil.example/"}, {"urls": "turn:t:3478", "username": ["x"]}, 42, "stun:ok.example:3478"]
    assert [s.urls for s in normalize(hostile)] == ["stun:ok.example:3478"]


def test_config_show_never_prints_the_turn_secret(tmp_path):
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "sleap_rtc_plugin", "config", "show", "--json"], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SLEAP_RTC_SERVER_TURN_SECRET": SECRET})
    assert SECRET not in out.stdout and json.loads(out.stdout)["settings"]["server.turn_secret"]["value"] == "***"
    text = subprocess.run([sys.executable, "-m", "sleap_rtc_plugin", "config", "show"], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SLEAP_RTC_SERVER_TURN_SECRET": SECRET}).stdout
    assert SECRET not in text
