"""One authenticated client<->worker link: control messages and files over a :class:`Transport`.

Incoming frames are handled strictly in arrival order by a single pump task, so a
file chunk is always written before the control frame that followed it is acted on.
Malformed or unexpected frames get a ``peer_error`` reply and a log line; they never
stop the pump. Until :meth:`PeerLink.authenticate` succeeds, anything other than
the handshake and keepalives is refused with ``peer_error(code="unauthenticated")``.

Keepalive: a ``keepalive`` JSON frame every ``keepalive_interval`` seconds on the
control path. File chunks are each one atomic data-channel message on the same
ordered channel, so a keepalive lands between two chunks, never inside one. Any
incoming frame counts as liveness; after ``idle_timeout`` seconds of silence the
link closes itself (a half-dead link must not hang a transfer forever).

Before authentication a peer is a stranger: it gets at most ``max_preauth_frames``
frames (the handshake needs four) before the link is closed, :meth:`accept_files`
only records where files will go (the folders are made once the handshake has
succeeded), and what it does wrong is logged through a repeat-collapsing logger.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from pathlib import Path
from typing import Any, Literal

from ..protocol import PEER, Message, ProtocolError
from ..protocol.peer import AuthChallenge, AuthResponse, AuthResult, Hello, Keepalive, PeerError
from ..protocol.transfer import TRANSFER_TYPES
from ..util.ratelimited_log import collapse_repeats
from ..util.tasks import spawn
from . import auth
from .errors import AuthError, LinkClosedError
from .fastpath import SCTP, FastPaths
from .transfer import DEFAULT_CACHE_MAX_BYTES, DEFAULT_MAX_SIZE, FileReceiver, TransferProgress, ReceivedFile, SentFile, Transfers
from .transfer_core import CHUNK_SIZE
from .transport import Transport

log = logging.getLogger(__name__)
#: What a remote peer makes us log: repeats collapse, so a flood cannot flood the journal.
peer_log = logging.getLogger(__name__ + ".remote")
collapse_repeats(peer_log)

#: Frames a peer may send before it has authenticated (handshake: 4, plus keepalives).
MAX_PREAUTH_FRAMES = 32

_AUTH_TYPES = (Hello, AuthChallenge, AuthResponse, AuthResult)
_CLOSED = object()


class LinkPort:
    """The link as :mod:`.auth` and the transfer engine see it (:class:`.ports.AuthPort`, :class:`.ports.TransferPort`)."""

    def __init__(self, link: "PeerLink") -> None:
        self._link = link

    role = property(lambda self: self._link.role)
    peer_id = property(lambda self: self._link.peer_id)
    local_fingerprint = property(lambda self: self._link.local_fingerprint)
    remote_fingerprint = property(lambda self: self._link.remote_fingerprint)
    fastpaths = property(lambda self: self._link.fastpaths)
    remote_features = property(lambda self: self._link.remote_features)

    def send(self, msg: Message) -> None:
        self._link._send(msg)

    def reply_error(self, code: str, message: str) -> None:
        self._link._reply_error(code, message)

    def local_features(self) -> set[str]:
        return self._link.local_features()

    async def next_auth_frame(self, timeout: float) -> Message:
        return await self._link._next_auth_frame(timeout)

    def note_remote(self, peer_id: str, features: set[str]) -> None:
        self._link.remote_peer_id = peer_id
        self._link.remote_features = features

    async def send_bytes(self, frame: bytes) -> None:
        await self._link.transport.send_bytes(frame)

    def chunk_payload(self, header: int, default: int = CHUNK_SIZE) -> int:
        return self._link.transport.chunk_payload(header, default)

    def ice_pair(self) -> Any:
        return self._link.transport.pc


class PeerLink:
    def __init__(
        self,
        transport: Transport,
        *,
        role: Literal["client", "worker"],
        peer_id: str = "",
        local_fingerprint: str = "",
        remote_fingerprint: str = "",
        keepalive_interval: float = 10.0,
        idle_timeout: float = 45.0,
        fastpaths: FastPaths | None = None,
    ):
        self.transport = transport
        self.fastpaths = fastpaths if fastpaths is not None else FastPaths(direct=False)
        self.remote_features: set[str] = set()
        self._local_features: set[str] | None = None
        self.role = role
        self.peer_id = peer_id
        self.remote_peer_id = ""
        self.local_fingerprint = local_fingerprint
        self.remote_fingerprint = remote_fingerprint
        self.setup_seconds = 0.0
        self.path: Any = None  # PathReport of the selected ICE pair (peer/path_report.py), set on connect
        self.authenticated = False
        self.auth_mode: str | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.keepalive_interval = keepalive_interval
        self.idle_timeout = idle_timeout
        self._closing = False
        self._last_seen = time.monotonic()
        self._raw: asyncio.Queue = asyncio.Queue()
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._auth_inbox: asyncio.Queue = asyncio.Queue()
        self._unauth_bytes_logged = False
        self.max_preauth_frames = MAX_PREAUTH_FRAMES
        self.preauth_frames = 0
        self._auth_running = False
        self._auth_done = asyncio.Event()
        self._pending_receiver: dict | None = None
        self.port = LinkPort(self)
        self.transfers = Transfers(self.port)
        transport.start(self._on_frame, self._on_transport_close)
        self._pump_task = asyncio.ensure_future(self._pump())
        self._keepalive_task = asyncio.ensure_future(self._keepalive())

    # -- sending -------------------------------------------------------------
    def _send(self, msg: Message) -> None:
        self.transport.send_text(msg.encode())

    async def send(self, msg: Message) -> None:
        """Send a control message (any type in the ``PEER`` registry)."""
        if not self.authenticated:
            raise AuthError("unauthenticated", "authenticate the link before sending messages")
        self._send(msg)

    # -- receiving -----------------------------------------------------------
    async def recv(self, timeout: float | None = None) -> Message:
        """The next application control message; raises :class:`LinkClosedError` once closed."""
        return await self._get(self._inbox, timeout, "message")

    async def _next_auth_frame(self, timeout: float) -> Message:
        try:
            return await self._get(self._auth_inbox, timeout, "authentication reply")
        except asyncio.TimeoutError:
            raise AuthError("timeout", f"no authentication reply from the peer within {timeout:g} s") from None

    async def _get(self, queue: asyncio.Queue, timeout: float | None, what: str):
        if queue.empty() and self._closing:
            raise LinkClosedError(f"peer link closed ({self.close_reason}) while waiting for a {what}")
        getter = asyncio.ensure_future(queue.get())
        closer = asyncio.ensure_future(self._closing_event().wait())
        try:
            done, _ = await asyncio.wait({getter, closer}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closer.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()
        if closer in done:
            raise LinkClosedError(f"peer link closed ({self.close_reason}) while waiting for a {what}")
        raise asyncio.TimeoutError(f"no {what} within {timeout:g} s")

    def _closing_event(self) -> asyncio.Event:
        if not hasattr(self, "_closing_ev"):
            self._closing_ev = asyncio.Event()
            if self._closing:
                self._closing_ev.set()
        return self._closing_ev

    def _on_frame(self, frame: str | bytes) -> None:
        self._last_seen = time.monotonic()
        if not self.authenticated:
            self.preauth_frames += 1
            if self.preauth_frames > self.max_preauth_frames:
                if self.preauth_frames == self.max_preauth_frames + 1:
                    peer_log.warning("peer link %s: more than %d frames before authentication; closing", self.peer_id or self.role, self.max_preauth_frames)
                    spawn(self.close(f"more than {self.max_preauth_frames} frames before authentication"), name="close-flooded-link")
                return
        self._raw.put_nowait(frame)

    def _on_transport_close(self, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self.close_reason = reason
        self._closing_event().set()
        log.info("peer link %s closing: %s", self.peer_id or self.role, reason)
        self.transfers.fail_outgoing(LinkClosedError(f"peer link closed ({reason})"))
        self._raw.put_nowait(_CLOSED)

    async def _pump(self) -> None:
        while True:
            frame = await self._raw.get()
            if frame is _CLOSED:
                break
            try:
                await self._handle(frame)
            except Exception:
                peer_log.exception("error handling a peer frame; continuing")
                self._reply_error("internal", "the peer hit an internal error handling that frame")
        try:
            await self.transfers.shutdown()
        finally:
            self.closed.set()

    def _reply_error(self, code: str, message: str) -> None:
        try:
            self._send(PeerError(code=code, message=message))
        except Exception:
            pass

    async def _settle_auth(self) -> None:
        """Hold a non-handshake frame until a running handshake ends: the peer may send
        its first request in the same breath as its last handshake frame."""
        if not self.authenticated and self._auth_running:
            await self._auth_done.wait()

    async def _handle(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self._settle_auth()
            if not self.authenticated:
                if not self._unauth_bytes_logged:
                    self._unauth_bytes_logged = True
                    peer_log.warning("binary frame before authentication refused")
                    self._reply_error("unauthenticated", "file data before authentication refused")
                return
            await self.transfers.on_chunk(frame)
            return
        try:
            msg = PEER.decode(frame)
        except ProtocolError as exc:
            peer_log.warning("refused peer frame: %s: %s", exc.code, exc.message)
            self._reply_error(exc.code, exc.message)
            return
        if isinstance(msg, Keepalive):
            return
        if isinstance(msg, _AUTH_TYPES) or (isinstance(msg, PeerError) and not self.authenticated):
            self._auth_inbox.put_nowait(msg)
            return
        await self._settle_auth()
        if not self.authenticated:
            peer_log.warning("refused %s before authentication", msg.TYPE)
            self._reply_error("unauthenticated", f"{msg.TYPE} refused: authenticate first")
            return
        if msg.TYPE in TRANSFER_TYPES:
            await self.transfers.on_control(msg)
            return
        self._inbox.put_nowait(msg)

    # -- authentication ------------------------------------------------------
    def local_features(self) -> set[str]:
        """What this side announces in its ``hello``; ``sctp16k`` only once large packets can be received."""
        if self._local_features is None:
            features = set(self.fastpaths.features())
            if SCTP in features and not self.transport.prepare_large_packets():
                features.discard(SCTP)
            self._local_features = features
        return self._local_features

    async def _tune_channel(self) -> None:
        if SCTP in self.local_features() and SCTP in self.remote_features:
            try:
                await self.transport.enable_large_packets()
            except Exception:
                log.exception("SCTP tuning failed on link %s; standard packets", self.peer_id or self.role)

    async def authenticate(self, secret: bytes | str | None, *, require: bool | None = None, timeout: float = 15.0) -> str:
        """Run the mutual room-secret handshake; returns ``"psk"`` or ``"legacy"``.

        ``require`` (client side) refuses a worker that has no secret; it defaults
        to ``secret is not None``. On failure the link is closed and :class:`AuthError`
        raised with a one-line reason.
        """
        if isinstance(secret, str):
            secret = secret.encode()
        if require is None:
            require = secret is not None
        self._auth_running = True
        try:
            if self.role == "worker":
                mode = await auth.run_worker(self.port, secret, timeout)
            else:
                mode = await auth.run_client(self.port, secret, require, timeout)
            while self._pending_receiver is not None:  # folders made and swept off the event loop
                pending, self._pending_receiver = self._pending_receiver, None
                self.transfers.receiver = await asyncio.to_thread(functools.partial(FileReceiver, **pending))
        except AuthError as exc:
            self._end_auth()
            peer_log.warning("authentication failed on link %s: %s", self.peer_id or self.role, exc)
            await asyncio.sleep(0.05)  # let the refusal frame leave before closing
            await self.close()
            raise
        except LinkClosedError as exc:
            self._end_auth()
            raise AuthError("closed", f"the peer closed the link during authentication: {exc}") from None
        except BaseException:
            self._end_auth()
            await self.close("authentication aborted")
            raise
        self.auth_mode = mode
        self.authenticated = True
        self._end_auth()
        log.info("peer link %s authenticated (%s) with %s", self.peer_id or self.role, mode, self.remote_peer_id)
        await self._tune_channel()
        return mode

    def _end_auth(self) -> None:
        self._auth_running = False
        self._auth_done.set()

    # -- files ---------------------------------------------------------------
    async def accept_files(
        self,
        dest_dir: str | Path,
        *,
        cache_dir: str | Path | None = None,
        partial_dir: str | Path | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        cache_max_bytes: int | None = DEFAULT_CACHE_MAX_BYTES,
    ) -> FileReceiver | None:
        """Accept incoming files into ``dest_dir`` (names sanitized; resumable from ``partial_dir``;
        cached by sha256, the cache capped at ``cache_max_bytes`` with least-recently-used
        eviction; None: no cap). See :class:`FileReceiver`.

        Before authentication this only records the folders and returns None: they are
        created when the handshake succeeds, so a stranger makes nothing on disk. Making
        them sweeps stale partial copies, a directory scan, so it runs in a thread."""
        self._pending_receiver = dict(dest_dir=dest_dir, cache_dir=cache_dir, partial_dir=partial_dir, max_size=max_size, cache_max_bytes=cache_max_bytes)
        if not self.authenticated:
            return None
        while self._pending_receiver is not None:
            pending, self._pending_receiver = self._pending_receiver, None
            self.transfers.receiver = await asyncio.to_thread(functools.partial(FileReceiver, **pending))
        return self.transfers.receiver

    async def send_file(self, path: str | Path, *, name: str | None = None, progress: TransferProgress | None = None) -> SentFile:
        """Send ``path`` to the peer; resumes a partial copy, or costs one round trip if the peer has it cached.

        On a link opened with ``fastpaths`` the bytes take the fastest path both peers
        support (shared storage, direct TLS stream, data channel); ``SentFile.via``,
        ``.mb_per_s`` and ``.summary()`` report which one and how fast.
        """
        if not self.authenticated:
            raise AuthError("unauthenticated", "authenticate the link before sending files")
        sent = await self.transfers.send_file(Path(path), name=name, progress=progress)
        if self.path is not None:
            self.path.note_bulk("cache" if sent.cached else sent.via)
        return sent

    async def receive_file(self, timeout: float | None = None) -> ReceivedFile:
        """The next completed incoming file (after :meth:`accept_files`)."""
        received = await self._get(self.transfers.received, timeout, "file")
        if self.path is not None:
            self.path.note_bulk("cache" if received.cached else received.via)
        return received

    # -- lifecycle -----------------------------------------------------------
    async def _keepalive(self) -> None:
        try:
            while not self._closing:
                await asyncio.sleep(self.keepalive_interval)
                if self._closing:
                    return
                if time.monotonic() - self._last_seen > self.idle_timeout:
                    log.warning("peer link %s silent for %.0f s; closing", self.peer_id or self.role, self.idle_timeout)
                    await self.close(reason=f"peer silent for {self.idle_timeout:g} s")
                    return
                try:
                    self._send(Keepalive(ts=time.time()))
                except LinkClosedError:
                    return
        except asyncio.CancelledError:
            pass

    async def close(self, reason: str = "closed locally") -> None:
        if not self._closing:
            self._on_transport_close(reason)
        if asyncio.current_task() is not self._keepalive_task:
            self._keepalive_task.cancel()
        await self.transport.close()
        if asyncio.current_task() is not self._pump_task:
            try:
                await asyncio.wait_for(asyncio.shield(self._pump_task), 30)
            except asyncio.TimeoutError:
                log.warning("peer link pump did not finish within 30 s of close")
        self.closed.set()

    async def __aenter__(self) -> "PeerLink":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
