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

import pytest

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


@pytest.mark.parametrize("bad", [{"urls": 5}, "not-a-list"])
def test_registered_rejects_malformed_ice_servers(bad):
    from sleap_rtc_plugin.protocol.base import ProtocolError
    from sleap_rtc_plugin.protocol.coordinator import COORDINATOR

    frame = {"type": "registered", "peer_id": "p1", "room_id": "r1", "heartbeat_interval": 1.0, "ice_servers": bad}
    import json

    if isinstance(bad, dict):
        frame["ice_servers"] = [bad]
        COORDINATOR.decode(json.dumps(frame))  # a dict of any values passes the edge; aiortc's parser is the next check
    else:
        with pytest.raises(ProtocolError):
            COORDINATOR.decode(json.dumps(frame))
