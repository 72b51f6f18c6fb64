"""Session strings: one copy-pasteable token that says where a worker is.

``sleap-session:`` + urlsafe base64 (no padding) of a JSON object with the room id
(``r``), room token (``t``), worker peer id (``p``) and, when known, the coordinator
URL (``s``) and the room secret (``k``). Users of the original sleap-rtc know the
prefix; the server field lets a client reach a worker's embedded coordinator without
any other configuration, and the secret lets it authenticate the worker (and be
authenticated) with nothing else to copy. The coordinator never sees the string, only
the room id and token a client takes from it. Strings without ``k`` (older workers,
or ones shared without the secret) still decode.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from .base import ProtocolError

PREFIX = "sleap-session:"


@dataclass(frozen=True)
class SessionString:
    room_id: str
    token: str
    peer_id: str
    server_url: str | None = None
    secret: str | None = None

    def encode(self) -> str:
        data = {"r": self.room_id, "t": self.token, "p": self.peer_id}
        if self.server_url:
            data["s"] = self.server_url
        if self.secret:
            data["k"] = self.secret
        raw = json.dumps(data, separators=(",", ":")).encode()
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "SessionString":
        text = text.strip()
        found = text.find(PREFIX)  # a whole pasted banner line ("Session string: sleap-session:…") is fine
        if found < 0:
            raise ProtocolError("bad_session_string", f"no {PREFIX!r} in what was pasted; copy the session string from the worker's output again")
        body = text[found + len(PREFIX):].split()[0] if text[found + len(PREFIX):].strip() else ""
        body = body.strip("'\"`<>()[],;.")
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError):
            raise ProtocolError("bad_session_string", "the session string is damaged (not valid base64 JSON); copy it again from the worker's output") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data.get(k) for k in ("r", "t", "p")):
            raise ProtocolError("bad_session_string", "the session string lacks the room, token or worker id; copy it again from the worker's output")
        server, secret = data.get("s"), data.get("k")
        return cls(data["r"], data["t"], data["p"], server if isinstance(server, str) else None, secret if isinstance(secret, str) and secret else None)

    def without_secret(self) -> "SessionString":
        """The same string minus the room secret: for a client that must bring its own."""
        return SessionString(self.room_id, self.token, self.peer_id, self.server_url)

    def masked(self) -> str:
        """A form safe for logs: recognisable, but with neither token nor secret in it."""
        return f"{PREFIX}****** (room {self.room_id}, worker {self.peer_id}{', with room secret' if self.secret else ''})"
