"""Pick the TURN transport that works from here, and probe STUN/TURN servers.

aiortc uses only the *first* TURN URL it is given. A coordinator hands out several
(``turn:…?transport=udp``, ``turn:…?transport=tcp``, ``turns:…:443``) because it cannot
know which one a site's firewall lets out; this module tries a real allocation on
each, in order, and keeps the first that works. When UDP to the TURN server fails,
UDP is blocked, so the STUN server is dropped too (an unanswered STUN query stalls
candidate gathering for 5 s). Results are cached for a short while so back-to-back
connections do not probe again. ``sleap-rtc doctor`` uses the same probes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, Iterable

from aioice import ice as aioice_ice
from aioice import stun, turn
from aiortc import RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri

log = logging.getLogger(__name__)

CACHE_SECONDS = 120.0
_cache: dict[tuple, tuple[float, list[RTCIceServer]]] = {}


#: Seconds the controlling agent holds back checks through a TURN relay (see prefer_unrelayed_pairs).
RELAY_HOLDBACK = 1.0


def prefer_unrelayed_pairs() -> None:
    """Give host and NAT (srflx) pairs a head start over relayed ones, process-wide, once.

    aioice nominates aggressively: the first pair whose check succeeds wins. A relayed
    check answers at once while a hole-punched one needs both NATs opened, so without
    this the slow relay path often wins where a direct one exists. The controlling side
    therefore starts relayed checks ``RELAY_HOLDBACK`` seconds late and drops them when a
    pair was nominated meanwhile; where only a relay works, setup is that much slower.
    """
    if getattr(aioice_ice.Connection.check_start, "_sleap_rtc", False):
        return
    original = aioice_ice.Connection.check_start

    async def check_start(self: Any, pair: Any) -> None:
        relayed = "relay" in (pair.local_candidate.type, pair.remote_candidate.type)
        if relayed and self.ice_controlling and RELAY_HOLDBACK > 0:
            self.check_state(pair, aioice_ice.CandidatePair.State.IN_PROGRESS)
            await asyncio.sleep(RELAY_HOLDBACK)
            if pair.component in self._nominated:
                self.check_state(pair, aioice_ice.CandidatePair.State.FAILED)
                self.check_complete(pair)
                return
        await original(self, pair)

    check_start._sleap_rtc = True  # type: ignore[attr-defined]
    aioice_ice.Connection.check_start = check_start  # type: ignore[method-assign]


@dataclass
class ProbeResult:
    url: str
    ok: bool
    detail: str  # the mapped/relayed address, or why it failed


def _valid_url(url: Any) -> bool:
    try:
        return isinstance(url, str) and len(url) <= 512 and bool(parse_stun_turn_uri(url))
    except ValueError:
        return False


def normalize(ice_servers: Iterable[Any]) -> list[RTCIceServer]:
    """RTCIceServer, URL string or ``{"urls", "username", "credential"}`` dict -> one RTCIceServer per URL.

    The list may come from the coordinator: an entry that is not a well-formed
    STUN/TURN URL with string credentials is dropped (and logged), never passed on.
    """
    out: list[RTCIceServer] = []
    for item in ice_servers:
        if isinstance(item, str):
            item = RTCIceServer(urls=item)
        elif isinstance(item, dict):
            user, cred = item.get("username"), item.get("credential")
            if not all(v is None or (isinstance(v, str) and len(v) <= 512) for v in (user, cred)):
                log.warning("ignoring an ICE server entry with malformed credentials")
                continue
            urls = item.get("urls")
            if not (isinstance(urls, str) or (isinstance(urls, list) and all(isinstance(u, str) for u in urls))):
                log.warning("ignoring an ICE server entry without string urls")
                continue
            item = RTCIceServer(urls=urls, username=user, credential=cred)
        elif not isinstance(item, RTCIceServer):
            log.warning("ignoring an ICE server entry of type %s", type(item).__name__)
            continue
        urls = item.urls if isinstance(item.urls, list) else [item.urls]
        for url in urls:
            if _valid_url(url):
                out.append(RTCIceServer(urls=url, username=item.username, credential=item.credential))
            else:
                log.warning("ignoring a malformed STUN/TURN URL %.80r", url)
    return out


def _scheme(server: RTCIceServer) -> str:
    return str(server.urls).split(":", 1)[0]


def transport_of(url: str) -> str:
    """``udp``, ``tcp`` or ``tls``: how we reach this STUN/TURN server."""
    parsed = parse_stun_turn_uri(url)
    return "tls" if parsed["scheme"] in ("turns", "stuns") else parsed.get("transport") or "udp"


async def probe_turn(server: RTCIceServer, timeout: float = 3.0) -> ProbeResult:
    """Allocate a relay on a TURN URL with its credentials, then release it."""
    url = str(server.urls)
    try:
        parsed = parse_stun_turn_uri(url)
        ssl = parsed["scheme"] == "turns"
        transport, _ = await asyncio.wait_for(
            turn.create_turn_endpoint(
                asyncio.DatagramProtocol, server_addr=(parsed["host"], parsed["port"]), username=server.username,
                password=server.credential, ssl=ssl, transport="tcp" if ssl else parsed["transport"],
            ),
            timeout,
        )
    except asyncio.TimeoutError:
        return ProbeResult(url, False, f"no answer within {timeout:g} s")
    except Exception as exc:  # refused, TLS failure, 401 from the server: all mean "not usable"
        return ProbeResult(url, False, f"{type(exc).__name__}: {exc}".strip().rstrip(":"))
    try:
        relayed = transport.get_extra_info("sockname")
    finally:
        transport.close()
    return ProbeResult(url, True, f"relay address {relayed[0]}:{relayed[1]}" if relayed else "allocated")


async def probe_stun(url: str, timeout: float = 3.0) -> ProbeResult:
    """One STUN binding request over UDP; ok with the address the server saw us as."""
    try:
        parsed = parse_stun_turn_uri(url)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future = loop.create_future()

        class _Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                if not answer.done():
                    answer.set_result(data)

        infos = await loop.getaddrinfo(parsed["host"], parsed["port"], family=socket.AF_INET, type=socket.SOCK_DGRAM)
        host, port = infos[0][4][:2]  # AF_INET: (host, port)
        transport, _ = await loop.create_datagram_endpoint(_Protocol, remote_addr=(str(host), int(port)))
        try:
            request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
            for _ in range(3):
                transport.sendto(bytes(request))
                try:
                    data = await asyncio.wait_for(asyncio.shield(answer), timeout / 3)
                    break
                except asyncio.TimeoutError:
                    continue
            else:
                return ProbeResult(url, False, f"no answer within {timeout:g} s")
        finally:
            transport.close()
        mapped = stun.parse_message(data).attributes.get("XOR-MAPPED-ADDRESS")
        return ProbeResult(url, True, f"we appear as {mapped[0]}:{mapped[1]}" if mapped else "answered")
    except Exception as exc:
        return ProbeResult(url, False, f"{type(exc).__name__}: {exc}".strip().rstrip(":"))


async def choose_ice_servers(ice_servers: Iterable[Any], *, timeout: float = 2.0) -> list[RTCIceServer]:
    """The STUN server and the one TURN URL aiortc should use from this network.

    With zero or one TURN URL there is nothing to choose and nothing is probed.
    """
    servers = normalize(ice_servers)
    turns = [s for s in servers if _scheme(s) in ("turn", "turns")]
    stuns = [s for s in servers if _scheme(s) in ("stun", "stuns")]
    if turns:
        prefer_unrelayed_pairs()
    if len(turns) <= 1:
        return servers
    key = tuple((str(s.urls), s.username, s.credential) for s in servers)
    cached = _cache.get(key)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    chosen: list[RTCIceServer] = []
    udp_failed = False
    for server in turns:
        result = await probe_turn(server, timeout)
        if result.ok:
            chosen = [server]
            break
        udp_failed = udp_failed or transport_of(str(server.urls)) == "udp"
        log.info("TURN %s not usable from here: %s", result.url, result.detail)
    if not chosen:
        log.warning("no TURN server answered from here (tried %s); connections need a direct or NAT path", ", ".join(str(s.urls) for s in turns))
        chosen = turns[:1]
    result_servers = ([] if udp_failed else stuns) + chosen
    _cache[key] = (time.monotonic() + CACHE_SECONDS, result_servers)
    return result_servers
