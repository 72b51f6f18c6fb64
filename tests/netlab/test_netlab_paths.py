"""A real aiortc link across each lab topology, and the path ICE picked there.

(a) same LAN → host; (b) both sites behind endpoint-independent NAT → server-reflexive
(hole punching); (c) site A's NAT picks a new port per destination → TURN relay over
UDP; (d) site A drops outbound UDP → TURN over TCP; (e) site A lets only TCP 443 out →
TURN over TLS. Each side gets the full ICE server list a coordinator hands out (STUN,
TURN UDP, TCP, TLS) and chooses what works from its own network.
"""

from __future__ import annotations

import pytest

from fixtures_netlab import TURN_IP, TURN_SECRET
from sleap_rtc_plugin.coordinator.turn import TurnConfig

pytestmark = pytest.mark.netlab

TURN = TurnConfig(secret=TURN_SECRET, ttl=600, stun_urls=[f"stun:{TURN_IP}:3478"],
                  urls=[f"turn:{TURN_IP}:3478?transport=udp", f"turn:{TURN_IP}:3478?transport=tcp", f"turns:{TURN_IP}:443?transport=tcp"])

CASES = {
    # topology: (offer host, answer host, expected kind, expected TURN transport on site A's side)
    "a": ("a1", "a2", "host", None),
    "b": ("a1", "b1", "srflx", None),
    "c": ("a1", "b1", "relay", None),
    "d": ("a1", "b1", "relay", "tcp"),
    "e": ("a1", "b1", "relay", "tls"),
}


@pytest.mark.parametrize("topology", sorted(CASES))
def test_link_across_topology(netlab, topology):
    offer_host, answer_host, kind, a_transport = CASES[topology]
    netlab.topology(topology)
    ice_a, _ = TURN.ice_servers("peer-a")
    ice_b, _ = TURN.ice_servers("peer-b")
    a, b = netlab.connect_pair(offer_host, answer_host, ice_a, ice_b)
    assert a["path"] and b["path"], "the link opened but reported no selected pair"
    assert a["path"]["kind"] == b["path"]["kind"] == kind, (a["path"], b["path"])
    if kind == "host":
        assert a["path"]["local_address"].startswith(netlab.address(offer_host) + ":")
        assert b["path"]["local_address"].startswith(netlab.address(answer_host) + ":")
    if kind == "relay":
        relayed = [p for p in (a["path"], b["path"]) if p["local_type"] == "relay"]
        assert relayed, "relay path without a relay candidate on either side"
        assert all(p["turn_server"].startswith(TURN_IP) for p in relayed)
    if a_transport:
        assert a["path"]["local_type"] == "relay" and a["path"]["relay_transport"] == a_transport, a["path"]


def test_large_sctp_packets_fit_through_a_turn_relay(netlab):
    """coturn relays datagrams only up to ~16,300 bytes: a relayed link must probe a
    smaller large-packet size instead of falling back to 1,160-byte packets (~8x slower)."""
    netlab.topology("c")
    ice_a, _ = TURN.ice_servers("peer-a")
    ice_b, _ = TURN.ice_servers("peer-b")
    a, b = netlab.connect_pair("a1", "b1", ice_a, ice_b, tuned=True)
    assert a["path"]["kind"] == "relay"
    assert a["large_packets"] and b["large_packets"], (a, b)
    assert 8192 < a["userdata_size"] < 12288 and 8192 < b["userdata_size"] < 12288
