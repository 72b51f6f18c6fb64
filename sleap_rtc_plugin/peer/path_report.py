"""Which network path a connection took, in words a user and lab IT can act on.

ICE picks one candidate pair per connection: ``host`` (a direct address on the same
network), ``srflx``/``prflx`` (an address a NAT mapped for us: hole punching) or
``relay`` (through the TURN server, over UDP, TCP or TLS to it). The report says which,
and -- because a relay is the slowest path -- why not a better one, and which bulk
path (direct TCP, tuned data channel, shared storage, cache) the transfers then used.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_RANK = {"host": 0, "srflx": 1, "prflx": 1, "relay": 2}


@dataclass
class PathReport:
    """The selected ICE candidate pair of one connection, plus the bulk paths it used."""

    local_type: str
    remote_type: str
    local_address: str
    remote_address: str
    relay_transport: str | None = None  # our hop to the TURN server: udp | tcp | tls
    turn_server: str | None = None
    bulk: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``host``, ``srflx`` (NAT traversal) or ``relay``: the worst of both ends."""
        worst = max(_RANK.get(self.local_type, 1), _RANK.get(self.remote_type, 1))
        return {0: "host", 1: "srflx", 2: "relay"}[worst]

    @property
    def why(self) -> str:
        if self.kind == "host":
            return "direct: both peers reach each other's own address"
        if self.kind == "srflx":
            return "through NAT (hole punching): the peers are on different networks"
        side = "this side" if self.local_type == "relay" else "the other side"
        return (f"relayed by TURN ({side}, {self.relay_transport or 'udp'} to the server): no direct or hole-punched "
                "UDP path (a NAT that changes ports per destination, or a firewall that drops UDP)")

    def note_bulk(self, path: str) -> None:
        if path not in self.bulk:
            self.bulk.append(path)

    def summary(self) -> str:
        relay = f" via TURN {self.relay_transport}" if self.relay_transport else ""
        bulk = f"; bulk: {', '.join(self.bulk)}" if self.bulk else ""
        return (f"path {self.kind}{relay}: {self.local_type} {self.local_address} <-> {self.remote_type} "
                f"{self.remote_address} ({self.why}){bulk}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind, "why": self.why}


def selected_path(pc: Any) -> PathReport | None:
    """The nominated pair of an aiortc ``RTCPeerConnection`` (None before ICE completes).

    aiortc exposes no stats for this, so it reads aioice's nominated pair -- the one
    place that knows it; a version that moves it yields None rather than an error.
    """
    try:
        connection = pc.sctp.transport.transport._connection
        pair = connection._nominated.get(1)
    except AttributeError:
        return None
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    relay_transport = turn_server = None
    if local.type == "relay" and connection.turn_server:
        relay_transport = "tls" if connection.turn_ssl else connection.turn_transport
        turn_server = f"{connection.turn_server[0]}:{connection.turn_server[1]}"
    return PathReport(
        local_type=local.type, remote_type=remote.type,
        local_address=f"{local.host}:{local.port}", remote_address=f"{remote.host}:{remote.port}",
        relay_transport=relay_transport, turn_server=turn_server,
    )


def log_path(report: PathReport | None, who: str) -> None:
    if report is None:
        log.info("%s: selected path unknown (ICE pair not exposed)", who)
    else:
        log.info("%s: %s", who, report.summary())
