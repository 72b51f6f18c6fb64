"""The message transport beneath a :class:`~sleap_rtc_plugin.peer.link.PeerLink`.

The link only needs an ordered, reliable, message-preserving pipe that carries text
(control JSON) and binary (file chunks) messages, with back-pressure on binary
sends. :class:`Transport` is that contract; :class:`DataChannelTransport` implements
it over one aiortc ``RTCDataChannel``. A faster transport (a tuned SCTP, QUIC, a
direct TCP path on a LAN) can be slotted in beneath the link by implementing the
same five members -- nothing above this module knows about aiortc.

Ordering: text and binary messages share one ordered channel, and every chunk is a
single atomic message (never split by us across messages), so a keepalive or
control frame can sit *between* two chunks but never *inside* one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Protocol

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 256 * 1024
TUNED_MESSAGE_SIZE = 256 * 1024

OnMessage = Callable[[str | bytes], None]
OnClose = Callable[[str], None]


class Transport(Protocol):
    max_message_size: int
    #: The ``RTCPeerConnection`` beneath (ICE path reports, the direct path's host), or None.
    pc: Any

    def start(self, on_message: OnMessage, on_close: OnClose) -> None:
        """Begin delivering messages (in order) and the close notification."""

    def send_text(self, text: str) -> None:
        """Queue a small control frame (not flow-controlled; keep them small)."""

    async def send_bytes(self, data: bytes) -> None:
        """Queue a binary frame, waiting while the send buffer is above its high-water mark."""

    async def close(self) -> None: ...

    @property
    def is_closed(self) -> bool: ...

    def prepare_large_packets(self) -> bool:
        """Accept large packets from the peer before announcing them; False when unsupported."""
        ...

    async def enable_large_packets(self) -> bool:
        """Send large packets once the peer announced it accepts them."""
        ...

    def chunk_payload(self, header: int, default: int) -> int:
        """File bytes per binary message (``default`` unless the transport was tuned)."""
        ...


class DataChannelTransport:
    """:class:`Transport` over an aiortc data channel, flow-controlled on ``bufferedAmount``.

    Sends wait on the ``bufferedamountlow`` event (fired when the buffer drains to
    ``low_water``) instead of polling. ``outgoing_filter`` is a test hook: a function
    applied to every outgoing binary frame (used to simulate corruption in transit).
    """

    def __init__(self, pc, channel, *, high_water: int = 4 * 1024 * 1024, low_water: int = 1024 * 1024):
        self.pc = pc
        self.channel = channel
        self.max_message_size = MAX_MESSAGE_SIZE
        self.high_water = high_water
        self.outgoing_filter: Callable[[bytes], bytes] | None = None
        self._low = asyncio.Event()
        self._closed = False
        self._on_close: OnClose | None = None
        channel.bufferedAmountLowThreshold = low_water

    def start(self, on_message: OnMessage, on_close: OnClose) -> None:
        self._on_close = on_close
        self.channel.on("message", on_message)
        self.channel.on("bufferedamountlow", self._low.set)
        self.channel.on("close", lambda: self._closed_by("data channel closed"))

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            state = self.pc.connectionState
            if state in ("failed", "closed"):
                self._closed_by(f"peer connection {state}")

        if self.channel.readyState in ("closing", "closed"):
            self._closed_by("data channel closed")

    def _closed_by(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._low.set()
        if self._on_close is not None:
            self._on_close(reason)

    @property
    def is_closed(self) -> bool:
        return self._closed or self.channel.readyState != "open"

    def _check_open(self) -> None:
        if self.is_closed:
            from .errors import LinkClosedError

            raise LinkClosedError("the peer link is closed")

    def send_text(self, text: str) -> None:
        self._check_open()
        self.channel.send(text)

    async def send_bytes(self, data: bytes) -> None:
        while self.channel.bufferedAmount > self.high_water:
            self._check_open()
            self._low.clear()
            await self._low.wait()
        self._check_open()
        if self.outgoing_filter is not None:
            data = self.outgoing_filter(data)
        self.channel.send(data)

    def prepare_large_packets(self) -> bool:
        """Accept large SCTP packets from the peer (before announcing ``+sctp16k``); False if unavailable."""
        from . import sctp_tuning

        return sctp_tuning.prepare_receive(self.pc.sctp)

    async def enable_large_packets(self) -> bool:
        """Send large SCTP packets with fewer SACKs (after the peer announced ``+sctp16k``)."""
        from . import sctp_tuning
        from .path_report import selected_path

        path = selected_path(self.pc)
        if path is not None and path.kind == "relay":  # a TURN server caps datagrams below 16 KiB
            return await sctp_tuning.enable_send(self.pc.sctp, (sctp_tuning.RELAY_PACKET_SIZE,))
        return await sctp_tuning.enable_send(self.pc.sctp)

    def chunk_payload(self, header: int, default: int) -> int:
        """File bytes per binary message: ``default``, or whole large SCTP packets once tuned."""
        if not self.large_packets:
            return default
        from . import sctp_tuning

        return sctp_tuning.message_payload(header, min(self.max_message_size, TUNED_MESSAGE_SIZE), sctp_tuning.userdata_size(self.pc.sctp))

    @property
    def large_packets(self) -> bool:
        from . import sctp_tuning

        return sctp_tuning.is_tuned(self.pc.sctp)

    async def close(self) -> None:
        self._closed_by("closed locally")
        await self.pc.close()
