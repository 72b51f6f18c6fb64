"""The narrow views of a link that authentication and file transfer get, instead of the whole :class:`PeerLink`.

:mod:`.auth` and the transfer drivers depend on these protocols only; :mod:`.link`
implements them (``PeerLink.port``). So no peer module imports the link but the link
itself and the connection code that builds it: no cycles, and each side's needs are
written down.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from ..protocol import Message
from .fastpath import FastPaths


class MessagePort(Protocol):
    def send(self, msg: Message) -> None:
        """Send one control message now (no authentication check: the callers are the handshake and the transfer engine)."""


class AuthPort(MessagePort, Protocol):
    @property
    def role(self) -> Literal["client", "worker"]: ...
    @property
    def peer_id(self) -> str: ...
    @property
    def local_fingerprint(self) -> str: ...
    @property
    def remote_fingerprint(self) -> str: ...

    def local_features(self) -> set[str]: ...

    async def next_auth_frame(self, timeout: float) -> Message:
        """The next handshake frame; :class:`AuthError` ``timeout`` after ``timeout`` seconds."""

    def note_remote(self, peer_id: str, features: set[str]) -> None:
        """What the peer's ``hello`` said about itself."""


class TransferPort(MessagePort, Protocol):
    @property
    def role(self) -> str: ...
    @property
    def fastpaths(self) -> FastPaths: ...
    @property
    def remote_features(self) -> set[str]: ...

    def reply_error(self, code: str, message: str) -> None:
        """Answer a frame that is not valid at all with ``peer_error``."""

    async def send_bytes(self, frame: bytes) -> None:
        """Send one binary chunk message (waits while the channel's buffer is full)."""

    def chunk_payload(self, header: int, default: int) -> int:
        """How many file bytes a chunk may carry after a ``header``-byte header."""

    def ice_pair(self) -> Any:
        """The peer connection whose nominated ICE pair says whether a direct stream can reach the peer (or None)."""
