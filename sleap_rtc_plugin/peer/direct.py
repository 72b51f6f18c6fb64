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
byte is on disk.

The bytes move on *blocking* sockets in threads of their own, not through
asyncio's SSL transport: asyncio's TLS runs in Python over memory BIOs, copying
every record several times on the event loop (measured: ~150 MB/s, CPU-bound),
while a blocking ``SSLSocket`` encrypts and decrypts in OpenSSL with the GIL
released, so hashing, disk writes and TLS run on separate cores. The event loop
only accepts connections and waits for a stream's thread to finish.
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
import socket
import ssl
import struct
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ..util.tasks import TaskSet

log = logging.getLogger(__name__)

STREAM_HEADER = struct.Struct("!32s16sQQ")
ACK = struct.Struct("!Q")
BLOCK = 1024 * 1024
STALL_TIMEOUT = 60.0
SOCKET_BUFFER = 4 * 1024 * 1024  # fewer wakeups per GB; the kernel caps it at net.core.[rw]mem_max
#: Direct streams (each holds an OS thread) one process runs at once per direction,
#: counted from the first byte of an accepted connection to the stream's close.
MAX_DIRECT_STREAMS = 8


class DirectPathError(Exception):
    """The direct stream could not be opened or broke; the caller falls back to the data channel."""


class StreamSlots:
    """A cap on concurrent direct streams, so connections cannot buy unbounded OS threads.

    Each stream holds one thread for its whole life (a handshake, then a pump), and a
    listener's port is open to anyone who can reach it. Past the cap a connection is
    closed at once (the sender falls back to the data channel) instead of getting a thread.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used = max(0, self.used - 1)


#: Streams this process receives (listener side) and sends (connecting side).
INCOMING = StreamSlots(MAX_DIRECT_STREAMS)
OUTGOING = StreamSlots(MAX_DIRECT_STREAMS)


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


def in_thread(fn: Callable[..., Any], *args: Any, name: str = "sleap-rtc-direct") -> asyncio.Future:
    """Run blocking ``fn`` on a thread of its own; the returned future resolves on the loop.

    Not ``asyncio.to_thread``: a stream holds its thread for the whole file, and the
    default executor (a handful of threads) is what every other file read, write
    and hash of the process queues on.
    """
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            fut.set_result(value) if ok else fut.set_exception(value)

    def run() -> None:
        try:
            outcome = (True, fn(*args))
        except BaseException as exc:  # noqa: BLE001 -- handed to the awaiting coroutine
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:
            pass  # the loop is gone; nobody is waiting

    threading.Thread(target=run, name=name, daemon=True).start()
    return fut


class DirectStream:
    """One established, authenticated TLS stream on a blocking socket (used from one thread at a time)."""

    def __init__(self, sock: ssl.SSLSocket, peer: object = None, slot: StreamSlots | None = None):
        self.sock = sock
        self.peer = peer
        self._slot = slot

    def recv_exactly(self, view: memoryview) -> None:
        """Fill ``view`` or raise ``ConnectionError`` (the peer closed mid-block)."""
        got, size = 0, len(view)
        while got < size:
            n = self.sock.recv_into(view[got:])
            if not n:
                raise ConnectionError(f"stream closed after {got} of {size} bytes of a block")
            got += n

    def abort(self) -> None:
        """Unblock whatever thread is inside ``send``/``recv`` on this stream (safe from any thread)."""
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        """Close the socket and free its slot (idempotent: the slot is given back once)."""
        self.abort()
        try:
            self.sock.close()
        except OSError:
            pass
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.give()


OnStream = Callable[[DirectStream, int, int], Awaitable[None]]


class DirectListener:
    """A one-stream TLS listener for one transfer; ``on_stream`` gets the stream after the token checks out."""

    def __init__(self, transfer_id: str, identity: TlsIdentity, on_stream: OnStream, *, handshake_timeout: float = 10.0):
        self.transfer_id = transfer_id
        self.identity = identity
        self.on_stream = on_stream
        self.handshake_timeout = handshake_timeout
        self.token = secrets.token_hex(32)
        self._token_hash = hashlib.sha256(bytes.fromhex(self.token)).digest()
        self._used = False
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task | None = None
        self._tasks = TaskSet(log, f"direct listener {transfer_id[:8]}")
        self.host = ""
        self.port = 0

    async def start(self, host: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, 0), family=family, backlog=4)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)  # inherited by the accepted stream
        self._sock.setblocking(False)
        self.host, self.port = host, self._sock.getsockname()[1]
        self._accepting = self._tasks.spawn(self._accept_loop(), name="sleap-rtc-direct-listen")
        log.info("direct path: listening on %s:%d for transfer %s", host, self.port, self.transfer_id[:8])

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._sock is not None:
            try:
                conn, peer = await loop.sock_accept(self._sock)
            except OSError as exc:
                log.info("direct path: accept failed: %s", exc)
                return
            self._tasks.spawn(self._handle(conn, peer), name="sleap-rtc-direct-stream")

    def _handshake(self, conn: socket.socket) -> tuple[ssl.SSLSocket, bytes]:
        """Blocking: TLS handshake and the stream header, both within ``handshake_timeout``."""
        conn.setblocking(True)
        conn.settimeout(self.handshake_timeout)
        tls = self.identity.server_context.wrap_socket(conn, server_side=True)
        try:
            raw = bytearray(STREAM_HEADER.size)
            DirectStream(tls).recv_exactly(memoryview(raw))
        except BaseException:
            tls.close()
            raise
        tls.settimeout(STALL_TIMEOUT)
        return tls, bytes(raw)

    async def _handle(self, conn: socket.socket, peer: object) -> None:
        if not INCOMING.take():
            log.info("direct path: refused a connection from %s: %d direct streams already running", peer, INCOMING.limit)
            conn.close()
            return
        try:
            tls, raw = await in_thread(self._handshake, conn, name="sleap-rtc-direct-accept")
        except (ConnectionError, OSError, ssl.SSLError) as exc:  # socket.timeout is an OSError
            INCOMING.give()
            log.info("direct path: dropped a connection from %s before its header: %s", peer, str(exc) or type(exc).__name__)
            conn.close()
            return
        except BaseException:
            INCOMING.give()
            conn.close()
            raise
        stream = DirectStream(tls, peer, INCOMING)
        token, tid, offset, length = STREAM_HEADER.unpack(raw)
        ok = hmac.compare_digest(hashlib.sha256(token).digest(), self._token_hash) and tid.hex() == self.transfer_id
        if not ok or self._used:
            log.warning("direct path: refused a stream from %s (bad or reused token)", peer)
            stream.close()
            return
        self._used = True
        self.close()
        try:
            await self.on_stream(stream, offset, length)
        except BaseException:
            stream.abort()  # never leave the sender waiting on a stream nobody reads
            raise

    def close(self) -> None:
        """Stop listening (idempotent); a stream already handed to ``on_stream`` carries on."""
        if self._accepting is not None and self._accepting is not asyncio.current_task():
            self._accepting.cancel()
        self._accepting = None
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()


def _connect(host: str, port: int, cert_sha256: str, header: bytes, timeout: float) -> ssl.SSLSocket:
    """Blocking: connect, handshake and check the pin within ``timeout``, then send the header."""
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise DirectPathError(f"cannot reach {host}:{port} within {timeout:g} s: {str(exc) or type(exc).__name__}") from None
    try:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        tls = client_context().wrap_socket(raw)
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        raise DirectPathError(f"cannot reach {host}:{port} within {timeout:g} s: {str(exc) or type(exc).__name__}") from None
    der = tls.getpeercert(binary_form=True) or b""
    if not hmac.compare_digest(hashlib.sha256(der).hexdigest(), cert_sha256):
        tls.close()
        raise DirectPathError(f"{host}:{port} presented a certificate other than the one pinned over the data channel")
    try:
        tls.settimeout(STALL_TIMEOUT)
        tls.sendall(header)
    except OSError as exc:
        tls.close()
        raise DirectPathError(f"{host}:{port} closed the stream before its header: {exc}") from None
    return tls


async def open_stream(host: str, port: int, cert_sha256: str, token: str, transfer_id: str, offset: int, length: int, timeout: float) -> DirectStream:
    """Connect, check the pinned certificate, then present the token; raises :class:`DirectPathError`."""
    header = STREAM_HEADER.pack(bytes.fromhex(token), bytes.fromhex(transfer_id), offset, length)
    if not OUTGOING.take():
        raise DirectPathError(f"{OUTGOING.limit} direct streams already running")
    try:
        tls = await in_thread(_connect, host, port, cert_sha256, header, timeout, name="sleap-rtc-direct-connect")
    except BaseException:
        OUTGOING.give()
        raise
    return DirectStream(tls, (host, port), OUTGOING)
