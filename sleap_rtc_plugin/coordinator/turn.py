"""Short-lived TURN credentials (the TURN REST API scheme coturn implements).

Static TURN usernames in every lab member's config do not scale and leak. Instead the
coordinator and the TURN server share one secret (coturn: ``use-auth-secret`` +
``static-auth-secret``); the coordinator hands each authenticated room member a
username ``<expiry unix time>:<peer id>`` and the password
``base64(HMAC-SHA1(secret, username))``, valid until the expiry. The TURN server checks
both without a user database, and a leaked credential dies with its expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any


def turn_credentials(secret: str, name: str, ttl: float, *, now: float | None = None) -> tuple[str, str, int]:
    """(username, password, expiry unix time) for ``name``, valid ``ttl`` seconds."""
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{name}"
    password = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return username, password, expiry


@dataclass
class TurnConfig:
    """``server.turn_secret``, ``server.turn_urls``, ``server.turn_ttl`` (+ ``server.stun_urls``)."""

    secret: str | None = None
    urls: list[str] = field(default_factory=list)
    ttl: float = 3600.0
    stun_urls: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Any) -> "TurnConfig":
        def urls(key: str) -> list[str]:
            value = settings.get(key, []) or []
            return [value] if isinstance(value, str) else [str(v) for v in value]

        return cls(secret=settings.get("server.turn_secret") or None, urls=urls("server.turn_urls"),
                   ttl=float(settings.get("server.turn_ttl", 3600.0) or 3600.0), stun_urls=urls("server.stun_urls"))

    @property
    def enabled(self) -> bool:
        return bool(self.stun_urls or (self.secret and self.urls))

    def ice_servers(self, peer_id: str, *, now: float | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """The ICE server list for one peer, and when its TURN credentials expire (None: no TURN)."""
        servers: list[dict[str, Any]] = [{"urls": url} for url in self.stun_urls]
        expiry = None
        if self.secret and self.urls:
            username, password, expiry = turn_credentials(self.secret, peer_id, self.ttl, now=now)
            servers += [{"urls": url, "username": username, "credential": password} for url in self.urls]
        return servers, expiry
