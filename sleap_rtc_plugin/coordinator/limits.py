"""Per-address limits on what anyone may do before holding a token.

Creating a room, failing a token check and opening a socket cost the coordinator disk
and memory but need no credential, so each is bounded per remote address: a cap on
concurrent connections, and token buckets (a burst, then a steady refill) for room
creation and failed authentication. Failed-auth audit rows are coalesced too: the
first failure of an address in a window is written as usual, the rest of that window
become one summary row, so a spammer cannot grow the audit table without bound.

Loopback addresses are exempt unless ``limit_loopback`` is set: the embedded
coordinator, single-machine use and the test suite all come from 127.0.0.1. Behind a
reverse proxy on the same host every client *is* 127.0.0.1: set ``limit_loopback``
there only with care (all clients share one bucket) and rate-limit in the proxy
instead (docs/lab-it.md).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from dataclasses import dataclass, field
from typing import Literal

#: Tracked addresses kept before idle, full buckets are forgotten (bounds memory).
MAX_TRACKED = 10_000


@dataclass(frozen=True)
class EdgeLimits:
    """The ``server.*`` limits (see config.example.toml for each one's meaning)."""

    max_connections_per_address: int = 64
    rooms_per_hour: float = 30.0
    room_burst: int = 10
    failed_auth_per_minute: float = 6.0
    failed_auth_burst: int = 10
    #: ``rate_limited`` refusals one connection may collect before it is closed.
    strikes_before_close: int = 3
    audit_window_seconds: float = 60.0
    max_room_ttl_hours: float = 720.0
    room_creation: Literal["open", "admin"] = "open"
    limit_loopback: bool = False

    def __post_init__(self) -> None:
        if self.room_creation not in ("open", "admin"):
            raise ValueError(f"server.room_creation must be 'open' or 'admin', not {self.room_creation!r}")
        if not (0 < self.max_room_ttl_hours <= 24 * 365 * 10):
            raise ValueError("server.max_room_ttl_hours must be in (0, 87600]")
        for name in ("max_connections_per_address", "room_burst", "failed_auth_burst", "strikes_before_close"):
            if getattr(self, name) < 1:
                raise ValueError(f"server.{name} must be at least 1")
        if self.rooms_per_hour <= 0 or self.failed_auth_per_minute <= 0 or self.audit_window_seconds <= 0:
            raise ValueError("server rate limits must be positive")


@dataclass
class TokenBucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until one token is available (0: available now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> float:
        """Take a token if there is one; return 0, or the seconds until there will be."""
        wait = self.wait(now)
        if wait == 0:
            self.tokens -= 1
        return wait

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


@dataclass
class _AuditWindow:
    start: float
    suppressed: int = 0
    kinds: set[str] = field(default_factory=set)


def retry_text(seconds: float) -> str:
    return f"try again in {max(1, math.ceil(seconds))} s"


@functools.lru_cache(maxsize=4096)
def is_loopback(address: str) -> bool:
    """Cached: it is asked several times per connection, and parsing an address is
    most of what the front door costs a registration. Bounded, so hostile addresses
    cannot grow it."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class AddressLimiter:
    """Connection counts, token buckets and audit coalescing, keyed by remote address.

    Synchronous and never awaits, so each check-and-update is atomic on the event loop.
    """

    def __init__(self, limits: EdgeLimits | None = None):
        self.limits = limits or EdgeLimits()
        self._connections: dict[str, int] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._audit: dict[str, _AuditWindow] = {}

    def exempt(self, address: str) -> bool:
        return not self.limits.limit_loopback and is_loopback(address)

    # --- concurrent connections --------------------------------------------------

    def connect(self, address: str) -> bool:
        """Count a new connection; ``False`` (and not counted) when over the cap."""
        if self.exempt(address):
            return True
        count = self._connections.get(address, 0)
        if count >= self.limits.max_connections_per_address:
            return False
        self._connections[address] = count + 1
        return True

    def disconnect(self, address: str) -> None:
        count = self._connections.get(address, 0) - 1
        if count > 0:
            self._connections[address] = count
        else:
            self._connections.pop(address, None)

    # --- rates ----------------------------------------------------------------------

    def _bucket(self, kind: str, address: str) -> TokenBucket:
        key = (kind, address)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._prune()
            if kind == "room":
                bucket = TokenBucket(self.limits.room_burst, self.limits.rooms_per_hour / 3600.0)
            else:
                bucket = TokenBucket(self.limits.failed_auth_burst, self.limits.failed_auth_per_minute / 60.0)
            self._buckets[key] = bucket
        return bucket

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]

    def take_room(self, address: str) -> float:
        """Charge one room creation; 0 if allowed, else seconds to wait."""
        return 0.0 if self.exempt(address) else self._bucket("room", address).take(time.monotonic())

    def auth_wait(self, address: str) -> float:
        """Seconds this address must wait before its next credential is even checked."""
        return 0.0 if self.exempt(address) else self._bucket("auth", address).wait(time.monotonic())

    def auth_failed(self, address: str) -> None:
        if not self.exempt(address):
            self._bucket("auth", address).take(time.monotonic())

    # --- audit coalescing --------------------------------------------------------------

    def audit_failure(self, address: str, kind: str) -> bool:
        """Whether this failed-auth audit row should be written now (the first of its
        address's window); the others are counted for :meth:`due_summaries`, which the
        caller runs first so a closed window never absorbs a new failure."""
        if self.exempt(address):
            return True
        window = self._audit.get(address)
        if window is None:
            if len(self._audit) >= MAX_TRACKED:
                return False
            self._audit[address] = _AuditWindow(time.monotonic())
            return True
        window.suppressed += 1
        window.kinds.add(kind)
        return False

    def due_summaries(self, *, everything: bool = False) -> list[tuple[str, int, list[str]]]:
        """``(address, suppressed, kinds)`` for windows that have closed (all, at shutdown);
        each is returned once and its window forgotten."""
        now = time.monotonic()
        due = []
        for address, window in list(self._audit.items()):
            if everything or now - window.start >= self.limits.audit_window_seconds:
                del self._audit[address]
                if window.suppressed:
                    due.append((address, window.suppressed, sorted(window.kinds)))
        return due
