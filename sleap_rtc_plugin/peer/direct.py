"""The direct path: a TLS-protected TCP stream between two peers that can reach each other.

Why: aiortc's pure-Python SCTP moves ~5-10 MB/s; a TCP stream moves hundreds of
MB/s. When ICE nominated a *host-to-host* candidate pair (same LAN, VPN, same
machine), the peers can evidently reach each other's addresses directly, so the
receiver listens on its side of that pair and the bulk bytes skip SCTP.

Trust comes from the already-authenticated data channel, which carries the
``direct_offer``: the listener's certificate is a throwaway self-signed one made
per link, and its SHA-256 is *pinned* through the channel (no CA involved); the
one-time token travels through the channel too and is the first thing the sender
writes *inside* TLS, after it has checked the pin. The listener stores only the
token's hash, compares in constant time, accepts one stream, then stops listening.
TLS authenticates every record, so a byte changed on the wire kills the stream
(and the whole file is SHA-256 verified at the end regardless).

Stream: ``token(32) | transfer_id(16) | offset(8) | length(8)`` then ``length``
raw bytes; the receiver answers with the 8-byte offset it has written once every
byte is on disk (TLS over asyncio has no half-close, so the length frames it).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import ssl
import struct
import tempfile
from dataclasses import dataclass
from typing import Awaitable, Callable

log = logging.getLogger(__name__)

STREAM_HEADER = struct.Struct("!32s16sQQ")
ACK = struct.Struct("!Q")
BLOCK = 1024 * 1024
READ_LIMIT = 4 * BLOCK


class DirectPathError(Exception):
    """The direct stream could not be opened or broke; the caller falls back to the data channel."""


@dataclass
class TlsIdentity:
    """A throwaway self-signed certificate for one link, and its pinned SHA-256."""

    server_context: ssl.SSLContext
    fingerprint: str

    @classmethod
    def generate(cls) -> "TlsIdentity":
        """Blocking (key generation, temp files): call through ``asyncio.to_thread``."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sleap-rtc direct path")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .sign(key, hashes.SHA256())
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory(prefix="sleap-rtc-tls-") as tmp:
            cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            with open(cert_path, "wb") as fh:
                fh.write(cert.public_bytes(serialization.Encoding.PEM))
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            ctx.load_cert_chain(cert_path, key_path)
        fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        return cls(ctx, fingerprint)


def client_context() -> ssl.SSLContext:
    """No CA and no hostname: the peer is identified by the pinned certificate hash instead."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def nominated_pair(pc) -> tuple[object, object] | None:
    """``(local, remote)`` aioice candidates of the pair ICE nominated, or None.

    Reaches into aiortc/aioice internals (tested with aiortc 1.16 / aioice 0.13);
    any shape change yields None, which just means "no direct path".
    """
    try:
        connection = pc.sctp.transport.transport._connection
        pair = connection._nominated.get(1)
        if pair is None:
            return None
        return pair.local_candidate, pair.remote_candidate
    except AttributeError:
        return None


def direct_host(pc) -> str | None:
    """The local address to listen on when the nominated pair is host-to-host, else None.

    A server-reflexive or relayed candidate means NAT or a TURN relay sits between
    the peers: a listening socket there is not reachable, so no direct path.
    """
    pair = nominated_pair(pc)
    if pair is None:
        return None
    local, remote = pair
    if getattr(local, "type", None) != "host" or getattr(remote, "type", None) != "host":
        return None
    host = getattr(local, "host", "")
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if addr.version == 6 and addr.is_link_local:
        return None  # needs a scope id the other side cannot use
    return str(addr)


OnStream = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int, int], Awaitable[None]]


class DirectListener:
    """A one-stream TLS listener for one transfer; ``on_stream`` gets the reader/writer after the token checks out."""

    def __init__(self, transfer_id: str, identity: TlsIdentity, on_stream: OnStream, *, handshake_timeout: float = 10.0):
        self.transfer_id = transfer_id
        self.identity = identity
        self.on_stream = on_stream
        self.handshake_timeout = handshake_timeout
        self.token = secrets.token_hex(32)
        self._token_hash = hashlib.sha256(bytes.fromhex(self.token)).digest()
        self._used = False
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.host = ""
        self.port = 0

    async def start(self, host: str) -> None:
        self._server = await asyncio.start_server(self._accept, host, 0, ssl=self.identity.server_context, limit=READ_LIMIT, ssl_handshake_timeout=self.handshake_timeout)
        self.host, self.port = host, self._server.sockets[0].getsockname()[1]
        log.info("direct path: listening on %s:%d for transfer %s", host, self.port, self.transfer_id[:8])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            raw = await asyncio.wait_for(reader.readexactly(STREAM_HEADER.size), self.handshake_timeout)
            token, tid, offset, length = STREAM_HEADER.unpack(raw)
            ok = hmac.compare_digest(hashlib.sha256(token).digest(), self._token_hash) and tid.hex() == self.transfer_id
            if not ok or self._used:
                log.warning("direct path: refused a stream from %s (bad or reused token)", peer)
                writer.close()
                return
            self._used = True
            self.close()
            await self.on_stream(reader, writer, offset, length)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError) as exc:
            if not self._used:
                log.info("direct path: dropped a connection from %s before its header: %s", peer, str(exc) or type(exc).__name__)
            writer.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


async def open_stream(host: str, port: int, cert_sha256: str, token: str, transfer_id: str, offset: int, length: int, timeout: float):
    """Connect, check the pinned certificate, then present the token; raises :class:`DirectPathError`."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=client_context(), limit=READ_LIMIT, ssl_handshake_timeout=timeout), timeout
        )
    except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
        raise DirectPathError(f"cannot reach {host}:{port} within {timeout:g} s: {str(exc) or type(exc).__name__}") from None
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True) or b""
    if not hmac.compare_digest(hashlib.sha256(der).hexdigest(), cert_sha256):
        writer.close()
        raise DirectPathError(f"{host}:{port} presented a certificate other than the one pinned over the data channel")
    writer.write(STREAM_HEADER.pack(bytes.fromhex(token), bytes.fromhex(transfer_id), offset, length))
    return reader, writer
