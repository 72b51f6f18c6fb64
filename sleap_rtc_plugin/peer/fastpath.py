"""Which faster paths a link may use beneath the data channel, and how peers agree on them.

The data channel always works (NAT traversal, TURN); faster paths are an
optimisation picked per transfer, never a requirement. Each side announces what it
supports in the ``software`` field of its ``hello`` (``"sleap-rtc-plugin +direct
+shared"``); a peer that announces nothing -- an older version, or a side with the
path switched off -- gets the plain data channel. The hello travels on the DTLS
channel whose fingerprints the PSK proof binds, so the announcement cannot be
altered by the relay that carried the SDP.

``+sctp16k`` is not a path of its own: both peers announcing it lets the data
channel itself use large SCTP packets and fewer SACKs (:mod:`.sctp_tuning`).

Order per transfer: receiver cache hit (nothing moves) > shared storage (a path
moves) > direct TLS stream > data channel. Each faster path falls back to the next
on failure, resuming at the receiver's offset; SHA-256 of the whole file is checked
at the end whatever the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

SOFTWARE = "sleap-rtc-plugin"
DIRECT = "direct"
SHARED = "shared"
SCTP = "sctp16k"
#: Offers may leave ``sha256`` empty and name it in ``file_end`` (the sender hashes while the direct stream moves).
HASH_AT_END = "hashend"

VIA_CACHE = "cache"
VIA_SHARED = "shared"
VIA_DIRECT = "direct"
VIA_DATACHANNEL = "datachannel"


@dataclass(frozen=True)
class FastPaths:
    """Per-link switches (from ``transfer.direct`` / ``transfer.shared_paths``)."""

    direct: bool = True
    direct_timeout: float = 3.0
    shared_paths: tuple[tuple[str, str], ...] = ()
    sctp: bool = True

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | Any) -> "FastPaths":
        get = settings.get
        return cls(
            direct=bool(get("transfer.direct", True)),
            shared_paths=parse_mappings(get("transfer.shared_paths", None) or []),
            sctp=bool(get("transfer.sctp_tuning", True)),
        )

    def features(self) -> set[str]:
        out = set()
        if self.direct:
            out |= {DIRECT, HASH_AT_END}
        if self.shared_paths:
            out.add(SHARED)
        if self.sctp:
            out.add(SCTP)
        return out


def parse_mappings(items) -> tuple[tuple[str, str], ...]:
    """``["/mnt/lab=/data/lab", ...]`` (client prefix = worker prefix) -> pairs; one-line error on a bad item."""
    pairs = []
    for item in items:
        if not isinstance(item, str) or item.count("=") != 1:
            raise ValueError(f"transfer.shared_paths entry {item!r} must look like 'client_prefix=worker_prefix'")
        client, worker = (part.strip() for part in item.split("="))
        if not client or not worker:
            raise ValueError(f"transfer.shared_paths entry {item!r} has an empty side")
        pairs.append((client, worker))
    return tuple(pairs)


def software_string(features: set[str]) -> str:
    return " ".join([SOFTWARE] + [f"+{f}" for f in sorted(features)])


def parse_features(software: str) -> set[str]:
    words = (software or "").split()
    if not words or words[0] != SOFTWARE:
        return set()
    return {w[1:] for w in words[1:] if w.startswith("+") and len(w) > 1}
