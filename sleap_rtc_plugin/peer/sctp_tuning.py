"""Larger SCTP packets and fewer SACKs on ONE aiortc association, between two peers of ours.

Why: aiortc's data channel costs per packet, not per byte -- at most 1,160 data
bytes per SCTP packet (``USERDATA_MAX_LENGTH``, sized for the minimum IPv6 MTU)
and one SACK per packet, all in pure Python. Packets up to the DTLS record limit
(16 KiB) and a SACK every few packets cut that work ~14x for the only path that
works through NAT. aiortc exposes no setting for either, so this module adapts
one ``RTCSctpTransport`` instance and its ``RTCDtlsTransport``; every other
association in the process keeps aiortc's behaviour (module globals are never
touched).

How (pinned to aiortc ``PINNED``; any other version: no-op, logged once):

- :func:`prepare_receive` -- our DTLS layer reads and writes whole records
  (aiortc reads ``recv(1500)``/``bio_read(1500)``, which would split a 16 KiB
  record). Harmless with standard packets; done *before* announcing the feature,
  so the peer may send large packets as soon as it has seen our announcement.
- :func:`enable_send` -- after both peers announced :data:`FEATURE`: a padded
  HEARTBEAT the size of a large packet must come back (its ACK echoes the padding,
  so both directions are probed, as RFC 8899 PLPMTUD does). If it does not --
  a path that drops IP fragments -- the link keeps standard packets. If it does,
  this association fragments messages into ~16 KiB DATA chunks (aiortc's own
  ``_send``/``_transmit``/congestion code, run with a per-instance packet size) and
  SACKs every :data:`SACK_EVERY` large packets or after :data:`SACK_DELAY`
  seconds, immediately on any gap or duplicate (so loss recovery is unchanged).

The receive side of an unmodified peer cannot take large packets, which is why
nothing is sent large unless the peer announced the feature.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import types
from dataclasses import dataclass, field

from ..util.tasks import spawn

log = logging.getLogger(__name__)

PINNED = "1.16.0"
FEATURE = "sctp16k"
DTLS_RECORD_LIMIT = 16384
SCTP_COMMON_HEADER = 12
SCTP_DATA_HEADER = 16
PACKET_SIZE = DTLS_RECORD_LIMIT
USERDATA_SIZE = (PACKET_SIZE - SCTP_COMMON_HEADER - SCTP_DATA_HEADER) // 4 * 4
STANDARD_PACKET = 1189
#: Packet size tried after (or, on a relayed pair, instead of) the 16 KiB one: coturn relays
#: datagrams only up to ~16,300 bytes, and a 16 KiB SCTP packet in DTLS + ChannelData is larger.
RELAY_PACKET_SIZE = 12288
SACK_EVERY = 4
SACK_DELAY = 0.002
PROBE_TIMEOUT = 1.0
PROBE_TRIES = 3
_BIO_READ = DTLS_RECORD_LIMIT + 2048
SOCKET_BUFFER = 4 * 1024 * 1024
_CLONED = ("_send", "_transmit", "_receive_sack_chunk", "_t3_expired")

_unsupported_logged = False


def supported() -> bool:
    """True when the installed aiortc is the version this adaptation was written and tested against."""
    global _unsupported_logged
    try:
        import aiortc
        from aiortc import rtcsctptransport as sctp_mod
    except ImportError:
        return False
    ok = aiortc.__version__ == PINNED and all(
        "USERDATA_MAX_LENGTH" in getattr(sctp_mod.RTCSctpTransport, name).__code__.co_names for name in _CLONED
    )
    if not ok and not _unsupported_logged:
        _unsupported_logged = True
        log.info("SCTP tuning disabled: written for aiortc %s, found %s; standard packets", PINNED, aiortc.__version__)
    return ok


@dataclass
class _State:
    large_send: bool = False
    last_packet: int = 0
    pending: int = 0
    timer: asyncio.TimerHandle | None = None
    probe_nonce: bytes = b""
    probe_ack: asyncio.Future | None = None
    originals: dict = field(default_factory=dict)
    userdata_size: int = USERDATA_SIZE


class _WholeRecordSSL:
    """Proxy for the DTLS ``SSL.Connection``: reads whole records (aiortc asks for 1,500 bytes)."""

    def __init__(self, ssl) -> None:
        self._wrapped = ssl

    def recv(self, bufsiz: int) -> bytes:
        return self._wrapped.recv(max(bufsiz, DTLS_RECORD_LIMIT))

    def bio_read(self, bufsiz: int) -> bytes:
        return self._wrapped.bio_read(max(bufsiz, _BIO_READ))

    def __getattr__(self, name):
        return getattr(self._wrapped, name)


def message_payload(header: int, max_message: int, userdata_size: int = USERDATA_SIZE) -> int:
    """Bytes of file data per message so that header + data fills whole large DATA chunks (no runt packet)."""
    return max(1, max_message // userdata_size) * userdata_size - header


def userdata_size(sctp) -> int:
    """DATA chunk payload of this association's large packets."""
    state = _state(sctp)
    return state.userdata_size if state else USERDATA_SIZE


def _widen_socket_buffers(dtls) -> None:
    """Room for bursts of 16 KiB datagrams on this link's UDP sockets (the default ~208 KiB holds ~6).

    The kernel caps the value at ``net.core.rmem_max``/``wmem_max``; a lower cap
    costs speed (drops, then SCTP retransmits), never correctness.
    """
    connection = getattr(getattr(dtls, "transport", None), "_connection", None)
    for protocol in getattr(connection, "_protocols", ()):
        sock = getattr(protocol, "transport", None) and protocol.transport.get_extra_info("socket")
        if sock is None:
            continue
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                if sock.getsockopt(socket.SOL_SOCKET, option) < SOCKET_BUFFER:
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:
                pass


def _state(sctp) -> _State | None:
    return getattr(sctp, "_sleap_rtc_tuning", None)


def is_prepared(sctp) -> bool:
    return _state(sctp) is not None


def is_tuned(sctp) -> bool:
    """True once this association sends large packets (both peers agreed and the probe came back)."""
    state = _state(sctp)
    return bool(state and state.large_send)


def prepare_receive(sctp) -> bool:
    """Let this association receive large packets (call before announcing :data:`FEATURE`)."""
    if not supported() or sctp is None:
        return False
    if _state(sctp) is not None:
        return True
    dtls = sctp.transport
    if dtls is None or dtls._ssl is None:
        return False
    if not isinstance(dtls._ssl, _WholeRecordSSL):
        dtls._ssl = _WholeRecordSSL(dtls._ssl)
    _widen_socket_buffers(dtls)
    state = _State()
    sctp._sleap_rtc_tuning = state
    original_handle = sctp._handle_data
    original_receive_chunk = sctp._receive_chunk

    async def _handle_data(data: bytes) -> None:
        state.last_packet = len(data)
        await original_handle(data)

    async def _receive_chunk(chunk) -> None:
        if state.probe_ack is not None and type(chunk).__name__ == "HeartbeatAckChunk":
            if any(value[:16] == state.probe_nonce for _, value in chunk.params) and not state.probe_ack.done():
                state.probe_ack.set_result(True)
                return
        await original_receive_chunk(chunk)

    sctp._handle_data = _handle_data
    sctp._receive_chunk = _receive_chunk
    return True


async def _probe(sctp, state: _State, packet_size: int = PACKET_SIZE) -> bool:
    from aiortc.rtcsctptransport import HeartbeatChunk

    loop = asyncio.get_running_loop()
    body = packet_size - SCTP_COMMON_HEADER - 4 - 4
    for attempt in range(PROBE_TRIES):
        state.probe_nonce = os.urandom(16)
        state.probe_ack = loop.create_future()
        chunk = HeartbeatChunk()
        chunk.params = [(1, state.probe_nonce + bytes(body - 16))]
        try:
            await sctp._send_chunk(chunk)
            await asyncio.wait_for(asyncio.shield(state.probe_ack), PROBE_TIMEOUT)
            return True
        except asyncio.TimeoutError:
            log.debug("large-packet probe %d unanswered", attempt + 1)
        except ConnectionError:
            return False
        finally:
            state.probe_ack = None
    return False


def _clone(sctp, name: str, namespace: dict):
    func = getattr(type(sctp), name)
    clone = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
    return types.MethodType(clone, sctp)


async def enable_send(sctp, sizes: tuple[int, ...] = (PACKET_SIZE, RELAY_PACKET_SIZE)) -> bool:
    """Switch this association to large packets and delayed SACKs, if a large probe makes the round trip.

    Call only after the peer announced :data:`FEATURE` (it then has
    :func:`prepare_receive` in place). ``sizes``: packet sizes to probe, largest first;
    the first that makes the round trip is used. Returns True when large packets are in use.
    """
    if not prepare_receive(sctp):
        return False
    state = _state(sctp)
    assert state is not None  # prepare_receive installed it
    if state.large_send:
        return True
    for packet_size in sizes:
        if await _probe(sctp, state, packet_size):
            break
    else:
        log.warning("SCTP tuning: a %d-byte packet did not make the round trip (path drops IP fragments?); standard packets", sizes[-1])
        return False
    from aiortc import rtcsctptransport as sctp_mod

    state.userdata_size = (packet_size - SCTP_COMMON_HEADER - SCTP_DATA_HEADER) // 4 * 4
    namespace = dict(vars(sctp_mod), USERDATA_MAX_LENGTH=state.userdata_size)
    for name in _CLONED:
        setattr(sctp, name, _clone(sctp, name, namespace))
    sctp._cwnd = max(sctp._cwnd, 4 * state.userdata_size)
    _install_delayed_sack(sctp, state, sctp_mod)
    state.large_send = True
    log.info("SCTP tuning on: DATA chunks up to %d bytes, SACK every %d large packets", state.userdata_size, SACK_EVERY)
    return True


def _install_delayed_sack(sctp, state: _State, sctp_mod) -> None:
    original = sctp._send_sack
    established = sctp_mod.RTCSctpTransport.State.ESTABLISHED

    def _fire() -> None:
        state.timer = None
        if sctp._sack_needed and sctp._association_state == established:
            spawn(_send_now(), name="sctp-delayed-sack")

    async def _send_now() -> None:
        state.pending = 0
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        try:
            await original()
        except ConnectionError:
            pass

    async def _send_sack() -> None:
        state.pending += 1
        if (
            state.pending < SACK_EVERY
            and state.last_packet > STANDARD_PACKET
            and not sctp._sack_misordered
            and not sctp._sack_duplicates
            and sctp._association_state == established
        ):
            if state.timer is None:
                state.timer = asyncio.get_running_loop().call_later(SACK_DELAY, _fire)
            return
        await _send_now()

    sctp._send_sack = _send_sack
