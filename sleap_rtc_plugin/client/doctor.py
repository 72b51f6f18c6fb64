"""``sleap-rtc doctor``: can this machine reach the coordinator, STUN, TURN and a worker?

Runs from either side (a laptop or a worker host) and prints one line per check; a
failed check says what to open in the firewall (or which setting to fix). The checks
are the real thing, not guesses: a TCP/TLS connection to the coordinator, a
registration with the room, a STUN binding, a TURN allocation per transport with the
credentials the coordinator hands out, and a peer link to a worker, authenticated.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config import Settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False

    def line(self) -> str:
        mark = "ok  " if self.ok else ("skip" if self.optional else "FAIL")
        return f"{mark} {self.name:<22} {self.detail}" + (f" -> {self.fix}" if self.fix and not self.ok else "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session-string", help="the worker's session string (room, token, server and worker in one)")
    parser.add_argument("--server", dest="server_url", help="coordinator URL, ws://host:port or wss://host:port (default: signaling_ws)")
    parser.add_argument("--room-id", help="room to register in (default: room_id)")
    parser.add_argument("--token", help="room token (default: token)")
    parser.add_argument("--worker", dest="worker_id", help="peer id of the worker to test a connection to (default: the session string's, else any)")
    parser.add_argument("--no-worker", action="store_true", help="skip the test connection to a worker (e.g. when running on the worker host)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds each network check may take (default 5; the worker link gets 6x)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


async def check_coordinator(url: str, timeout: float) -> Check:
    """TCP reachability, and for ``wss://`` a verified TLS handshake."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host, port = parts.hostname or "", parts.port or (443 if secure else 80)
    from ..coordinator.tls import TLSConfigError, client_context, describe_failure

    try:
        context = client_context(url)
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context, server_hostname=host if secure else None), timeout)
        writer.close()
    except (ssl.SSLError, TLSConfigError) as exc:
        return Check("coordinator", False, describe_failure(url, exc),
                     "trust its certificate with --tls-ca PEM (or tls_ca), or give the coordinator a certificate for this host name")
    except (OSError, asyncio.TimeoutError) as exc:
        why = "no answer" if isinstance(exc, asyncio.TimeoutError) else (exc.strerror or str(exc))
        return Check("coordinator", False, f"{url}: cannot connect ({why})", f"open outbound TCP {port} to {host}; check that `sleap-rtc server` runs there")
    return Check("coordinator", True, f"{url} reachable" + (" (TLS verified)" if secure else " (plain ws: use wss:// beyond one machine)"))


def _turn_fix(url: str, detail: str) -> str:
    from ..peer.ice_choice import transport_of
    from aiortc.rtcicetransport import parse_stun_turn_uri

    parsed = parse_stun_turn_uri(url)
    if "401" in detail or "Unauthorized" in detail:
        return "the TURN server refused the credentials: server.turn_secret must equal coturn's static-auth-secret, and both clocks must be right"
    if "CERTIFICATE" in detail.upper() or "SSL" in detail.upper():
        return "the TURN server's TLS certificate is not trusted here (give coturn a certificate from a CA this machine trusts)"
    transport = transport_of(url)
    proto = "UDP" if transport == "udp" else "TCP"
    return f"open outbound {proto} {parsed['port']} to {parsed['host']}" + (" (TLS)" if transport == "tls" else "")


async def run_checks(spec: Any, settings: Settings, *, timeout: float, test_worker: bool) -> list[Check]:
    from ..coordinator.client import CoordinatorClient, CoordinatorError
    from ..peer.ice_choice import normalize, probe_stun, probe_turn, transport_of

    checks = [await check_coordinator(spec.server_url, timeout)]
    if not checks[0].ok:
        return checks
    coord = CoordinatorClient(spec.server_url, room_id=spec.room_id, token=spec.token, role="client", reconnect=False)
    try:
        await asyncio.wait_for(coord.start(), timeout * 2)
    except (CoordinatorError, asyncio.TimeoutError, OSError) as exc:
        checks.append(Check("room", False, f"cannot register in room {spec.room_id}: {exc}", "check the room id and token (the worker prints both)"))
        return checks
    try:
        ice = normalize(await coord.ice_servers(spec.ice_servers))
        from_coordinator = coord.coordinator_ice[0] is not None
        checks.append(Check("room", True, f"registered in {spec.room_id}; ICE servers from "
                            + ("the coordinator (TURN credentials issued)" if from_coordinator else "local settings (the coordinator hands out none)")))
        stuns = [s for s in ice if str(s.urls).startswith("stun")]
        turns = [s for s in ice if str(s.urls).startswith("turn")]
        if not stuns:
            checks.append(Check("stun", False, "no STUN server configured", "set server.stun_urls on the coordinator (or ice_servers here) to cross NATs", optional=True))
        for server in stuns:
            result = await probe_stun(str(server.urls), timeout)
            host_port = str(server.urls).split(":", 1)[1]
            checks.append(Check(f"stun {host_port}", result.ok, result.detail,
                                f"open outbound UDP to {host_port}; without it only TURN or the same LAN work"))
        if not turns:
            checks.append(Check("turn", False, "no TURN server configured", "set server.turn_secret and server.turn_urls on the coordinator "
                                "if peers sit behind strict NATs or UDP-blocking firewalls (docs/networking.md)", optional=True))
        for server in turns:
            result = await probe_turn(server, timeout)
            checks.append(Check(f"turn {transport_of(str(server.urls))}", result.ok, f"{server.urls}: {result.detail}",
                                _turn_fix(str(server.urls), result.detail)))
        if test_worker:
            checks.append(await _check_worker(coord, spec, ice, timeout * 6))
    finally:
        await coord.close()
    return checks


async def _check_worker(coord: Any, spec: Any, ice: list, timeout: float) -> Check:
    from ..peer import secrets
    from ..peer.connection import connect
    from ..peer.errors import ConnectError
    from ..protocol.offer import PeerOffer, SdpOffer

    worker_id = spec.worker_id
    if not worker_id:
        workers = await coord.discover(role="worker")
        if not workers:
            return Check("worker link", False, "no worker in the room", "start one with `sleap-rtc worker`", optional=True)
        worker_id = workers[0].peer_id

    async def send_offer(offer: dict) -> dict:
        payload = PeerOffer(offer=SdpOffer(sdp=offer["sdp"], type=offer["type"]), job_id=uuid.uuid4().hex[:12], intent="submit")  # type: ignore[arg-type]
        await coord.relay(worker_id, "offer", payload.to_dict())
        return (await coord.next_relay(kind="answer", source=worker_id)).payload

    try:
        link = await connect(send_offer, ice_servers=ice, timeout=timeout, role="client", peer_id=coord.peer_id or "", allow_loopback=spec.ice_loopback)
    except ConnectError as exc:
        return Check("worker link", False, f"to {worker_id}: {exc}", "no network path: configure TURN (server.turn_urls), or open UDP to the worker's network")
    except Exception as exc:  # the worker refused (busy, bad offer): still one line
        return Check("worker link", False, f"to {worker_id}: {getattr(exc, 'message', None) or exc}", "see the worker's log")
    try:
        mode = await link.authenticate(secrets.lookup_secret(spec.room_id, explicit=spec.room_secret), timeout=timeout)
        path = link.path.summary() if link.path else "path unknown"
        return Check("worker link", True, f"to {worker_id}: authenticated ({mode}); {path}")
    except Exception as exc:
        return Check("worker link", False, f"to {worker_id}: connected but authentication failed: {exc}", "use the room secret the worker prints")
    finally:
        await link.close("doctor done")


async def run(args: argparse.Namespace) -> int:
    import json

    from .api import ConnectionSpec

    spec = ConnectionSpec(session_string=args.session_string, server_url=args.server_url, room_id=args.room_id, token=args.token,
                          worker_id=args.worker_id).resolved(args.settings)
    checks = await run_checks(spec, args.settings, timeout=args.timeout, test_worker=not args.no_worker)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for check in checks:
            print(check.line(), flush=True)
    return 0 if all(c.ok or c.optional for c in checks) else 1
