"""Mutual room-secret (PSK) authentication bound to this link's DTLS fingerprints.

Why fingerprints: the coordinator relays the SDP, so it could terminate two DTLS
connections (client<->relay, relay<->worker) and pass the auth frames between
them. Each proof is ``HMAC-SHA256(secret, context | prover | nonce | worker_fp |
client_fp)`` where the fingerprints are the ones *this* DTLS session uses; behind
such a relay the client and the worker see different fingerprint pairs, so a
relayed proof never verifies. Order: the worker challenges first (it must not run
anything for an unproven client), then the client challenges the worker (so a
client never uploads data to an impostor).

Without a secret on the worker the link runs in *legacy* mode (unauthenticated,
warned about once per process). A worker with a secret refuses a client without
one, with a message telling the user how to supply it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import TypeVar

from ..protocol.base import Message
from ..protocol.peer import AuthChallenge, AuthResponse, AuthResult, Hello, PeerError
from .errors import AuthError
from .fastpath import parse_features, software_string
from .ports import AuthPort

M = TypeVar("M", bound=Message)

log = logging.getLogger(__name__)

CONTEXT = b"sleap-rtc/peer-auth/v1"
MISSING_SECRET = "this worker requires the room secret; pass --room-secret or set SLEAP_RTC_ROOM_SECRET_<ROOM>"
WRONG_SECRET = "room secret rejected: wrong secret for this room (or the connection is being relayed by a third party)"
_legacy_warned = False


def proof(secret: bytes, *, prover: str, nonce: bytes, worker_fingerprint: str, client_fingerprint: str) -> str:
    """The MAC a ``prover`` ("client" or "worker") returns for ``nonce`` on this link."""
    parts = [CONTEXT, prover.encode(), nonce, worker_fingerprint.upper().encode(), client_fingerprint.upper().encode()]
    data = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
    return hmac.new(secret, data, hashlib.sha256).hexdigest()


def _fingerprints(link: AuthPort) -> tuple[str, str]:
    if link.role == "worker":
        return link.local_fingerprint, link.remote_fingerprint
    return link.remote_fingerprint, link.local_fingerprint


async def _expect(link: AuthPort, cls: type[M], timeout: float) -> M:
    msg = await link.next_auth_frame(timeout)
    if isinstance(msg, PeerError):
        raise AuthError(msg.code, f"peer refused authentication: {msg.message}")
    if not isinstance(msg, cls):
        raise AuthError("protocol", f"expected {cls.TYPE} during authentication, got {msg.TYPE}")
    return msg


def _warn_legacy(text: str) -> None:
    global _legacy_warned
    if not _legacy_warned:
        _legacy_warned = True
        log.warning(text)


async def _challenge(link: AuthPort, secret: bytes, prover: str, timeout: float) -> bool:
    nonce = secrets.token_bytes(32)
    link.send(AuthChallenge(nonce=nonce.hex()))
    response = await _expect(link, AuthResponse, timeout)
    worker_fp, client_fp = _fingerprints(link)
    expected = proof(secret, prover=prover, nonce=nonce, worker_fingerprint=worker_fp, client_fingerprint=client_fp)
    return hmac.compare_digest(expected.encode(), response.mac.encode()[:128])


async def _respond(link: AuthPort, secret: bytes, prover: str, timeout: float) -> None:
    challenge = await _expect(link, AuthChallenge, timeout)
    try:
        nonce = bytes.fromhex(challenge.nonce)
    except ValueError:
        raise AuthError("protocol", "authentication challenge nonce is not hex") from None
    if len(nonce) < 16:
        raise AuthError("protocol", "authentication challenge nonce is too short")
    worker_fp, client_fp = _fingerprints(link)
    link.send(AuthResponse(mac=proof(secret, prover=prover, nonce=nonce, worker_fingerprint=worker_fp, client_fingerprint=client_fp)))


def _hello(link: AuthPort, secret: bytes | None) -> Hello:
    return Hello(role=link.role, peer_id=link.peer_id, auth_required=secret is not None, software=software_string(link.local_features()))


def _note_hello(link: AuthPort, hello: Hello) -> None:
    link.note_remote(hello.peer_id, parse_features(hello.software))


async def run_worker(link: AuthPort, secret: bytes | None, timeout: float) -> str:
    link.send(_hello(link, secret))
    hello = await _expect(link, Hello, timeout)
    if hello.role != "client":
        raise AuthError("protocol", f"expected a client on this link, got a {hello.role}")
    _note_hello(link, hello)
    if secret is None:
        _warn_legacy("no room secret configured: accepting clients without authentication (legacy mode); create one with `sleap-rtc room create-secret`")
        return "legacy"
    if not hello.auth_required:
        link.send(AuthResult(ok=False, reason=MISSING_SECRET))
        raise AuthError("missing_secret", f"client {hello.peer_id!r} did not present the room secret; refused")
    ok = await _challenge(link, secret, "client", timeout)
    link.send(AuthResult(ok=ok, reason="" if ok else WRONG_SECRET))
    if not ok:
        raise AuthError("bad_secret", f"client {hello.peer_id!r} failed the room-secret challenge; refused")
    await _respond(link, secret, "worker", timeout)
    result = await _expect(link, AuthResult, timeout)
    if not result.ok:
        raise AuthError("rejected", f"client rejected this worker: {result.reason}")
    return "psk"


async def run_client(link: AuthPort, secret: bytes | None, require: bool, timeout: float) -> str:
    link.send(_hello(link, secret))
    hello = await _expect(link, Hello, timeout)
    if hello.role != "worker":
        raise AuthError("protocol", f"expected a worker on this link, got a {hello.role}")
    _note_hello(link, hello)
    if not hello.auth_required:
        if require:
            raise AuthError("worker_unauthenticated", f"worker {hello.peer_id!r} has no room secret configured, but this client requires one")
        _warn_legacy(f"worker {hello.peer_id!r} does not use a room secret: this connection is not authenticated (legacy mode)")
        return "legacy"
    if secret is None:
        result = await _expect(link, AuthResult, timeout)
        raise AuthError("missing_secret", result.reason or MISSING_SECRET)
    await _respond(link, secret, "client", timeout)
    result = await _expect(link, AuthResult, timeout)
    if not result.ok:
        raise AuthError("bad_secret", result.reason or WRONG_SECRET)
    ok = await _challenge(link, secret, "worker", timeout)
    link.send(AuthResult(ok=ok, reason="" if ok else "worker failed the room-secret challenge"))
    if not ok:
        raise AuthError("worker_failed", "the worker could not prove the room secret on this connection (a relay in the middle, or a misconfigured worker); aborted")
    return "psk"
