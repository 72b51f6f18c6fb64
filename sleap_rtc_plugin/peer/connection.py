"""Open a :class:`~sleap_rtc_plugin.peer.link.PeerLink` from either side.

Signaling is by plain payload dicts (``{"sdp": ..., "type": "offer"|"answer"}``) so
any relay can carry them -- in this project the coordinator's ``relay`` frames.
Each stage has its own timeout and its own exception, so a user sees *which* stage
failed: :class:`NoAnswerError` (the other side never answered the offer),
:class:`IceFailedError` (no network path), :class:`ChannelTimeoutError` (connected
but the data channel never opened).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Iterable, Literal

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from .fastpath import FastPaths
from .errors import ChannelTimeoutError, ConnectError, IceFailedError, NoAnswerError
from .ice import enable_loopback_candidates, loopback_requested, rtc_configuration
from .ice_choice import choose_ice_servers
from .link import PeerLink
from .path_report import log_path, selected_path
from .transport import DataChannelTransport

log = logging.getLogger(__name__)

CHANNEL_LABEL = "sleap-rtc"
Role = Literal["client", "worker"]


def _fingerprint(sdp: str) -> str:
    """The sha-256 DTLS fingerprint of a session description.

    aiortc refuses the DTLS handshake unless the peer's certificate matches *every*
    supported fingerprint in the remote description, so the remote SDP's sha-256
    line is the fingerprint of the certificate actually in use on this link.
    """
    for media in SessionDescription.parse(sdp).media:
        if media.dtls is not None:
            for fp in media.dtls.fingerprints:
                if fp.algorithm.lower() == "sha-256":
                    return fp.value.upper()
    raise ConnectError("sdp", "session description carries no sha-256 DTLS fingerprint")


def _payload(desc: RTCSessionDescription) -> dict[str, str]:
    return {"sdp": desc.sdp, "type": desc.type}


def _description(payload: dict[str, Any], expected: str) -> RTCSessionDescription:
    if not isinstance(payload, dict) or not isinstance(payload.get("sdp"), str) or payload.get("type") != expected:
        raise ConnectError("sdp", f"expected an SDP {expected} payload {{'sdp': str, 'type': '{expected}'}}")
    return RTCSessionDescription(sdp=payload["sdp"], type=expected)


async def _wait_open(pc: RTCPeerConnection, opened: asyncio.Future, timeout: float, started: float) -> Any:
    failed = asyncio.get_running_loop().create_future()

    @pc.on("connectionstatechange")
    def _state() -> None:
        if pc.connectionState == "failed" and not failed.done():
            failed.set_result(None)

    done, _ = await asyncio.wait({opened, failed}, timeout=max(0.0, timeout - (time.monotonic() - started)), return_when=asyncio.FIRST_COMPLETED)
    if opened in done:
        return opened.result()
    if failed in done:
        raise IceFailedError("ICE failed: no network path between the peers (firewall? configure a TURN server)")
    if pc.iceConnectionState not in ("connected", "completed"):
        raise IceFailedError(f"ICE did not connect within {timeout:g} s (state {pc.iceConnectionState}); check network/TURN settings")
    raise ChannelTimeoutError(f"peers connected but the data channel did not open within {timeout:g} s")


def _set_once(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _buffer_early(channel) -> list:
    """Keep frames that arrive before the link listens (the peer may speak the moment the
    channel opens, and over a relay its first frame can land before ``_link`` runs)."""
    early: list = []
    channel.on("message", early.append)
    channel._sleap_rtc_early = early
    return early


def _link(pc: RTCPeerConnection, channel, role: Role, peer_id: str, started: float, fastpaths: FastPaths | None) -> PeerLink:
    early = getattr(channel, "_sleap_rtc_early", None)
    link = PeerLink(
        DataChannelTransport(pc, channel),
        fastpaths=fastpaths,
        role=role,
        peer_id=peer_id,
        local_fingerprint=_fingerprint(pc.localDescription.sdp),
        remote_fingerprint=_fingerprint(pc.remoteDescription.sdp),
    )
    if early is not None:
        channel.remove_listener("message", early.append)
        for frame in early:
            link._on_frame(frame)
        early.clear()
    link.setup_seconds = time.monotonic() - started
    link.path = selected_path(pc)
    log.info("peer link open: %s %s (setup %.3f s)", role, peer_id, link.setup_seconds)
    log_path(link.path, f"{role} link {peer_id}")
    return link


async def connect(
    send_offer: Callable[[dict], Awaitable[dict]],
    *,
    ice_servers: Iterable[Any] = (),
    timeout: float = 30.0,
    role: Role = "client",
    peer_id: str = "",
    allow_loopback: bool | None = None,
    fastpaths: FastPaths | None = None,
) -> PeerLink:
    """Offer a connection; ``send_offer`` ships the offer payload and returns the answer payload.

    ``fastpaths`` (e.g. ``FastPaths.from_settings(settings)``) enables the faster
    transfer paths beneath the data channel; None keeps every byte on the data channel.
    """
    if loopback_requested(allow_loopback):
        enable_loopback_candidates()
    started = time.monotonic()
    pc = RTCPeerConnection(rtc_configuration(await choose_ice_servers(ice_servers)))
    try:
        channel = pc.createDataChannel(CHANNEL_LABEL, ordered=True)
        _buffer_early(channel)
        opened: asyncio.Future = asyncio.get_running_loop().create_future()
        channel.on("open", lambda: _set_once(opened, channel))
        await pc.setLocalDescription(await pc.createOffer())
        try:
            answer = await asyncio.wait_for(send_offer(_payload(pc.localDescription)), timeout)
        except asyncio.TimeoutError:
            raise NoAnswerError(f"no answer to the connection offer within {timeout:g} s (is the worker running?)") from None
        await pc.setRemoteDescription(_description(answer, "answer"))
        await _wait_open(pc, opened, timeout, started)
        return _link(pc, channel, role, peer_id, started, fastpaths)
    except BaseException:
        await pc.close()
        raise


async def accept(
    offer_payload: dict,
    *,
    ice_servers: Iterable[Any] = (),
    timeout: float = 30.0,
    role: Role = "worker",
    peer_id: str = "",
    allow_loopback: bool | None = None,
    fastpaths: FastPaths | None = None,
) -> tuple[dict, "asyncio.Task[PeerLink]"]:
    """Answer an offer. Returns the answer payload to relay back, and a task that
    resolves to the :class:`PeerLink` once the data channel is open (or raises a
    :class:`ConnectError`)."""
    if loopback_requested(allow_loopback):
        enable_loopback_candidates()
    started = time.monotonic()
    pc = RTCPeerConnection(rtc_configuration(await choose_ice_servers(ice_servers)))
    opened: asyncio.Future = asyncio.get_running_loop().create_future()

    @pc.on("datachannel")
    def _on_channel(channel) -> None:
        if channel.label != CHANNEL_LABEL or opened.done():
            return
        _buffer_early(channel)
        if channel.readyState == "open":
            opened.set_result(channel)
        else:
            channel.on("open", lambda: _set_once(opened, channel))

    try:
        await pc.setRemoteDescription(_description(offer_payload, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except BaseException:
        await pc.close()
        raise

    async def _finish() -> PeerLink:
        try:
            channel = await _wait_open(pc, opened, timeout, started)
            return _link(pc, channel, role, peer_id, started, fastpaths)
        except BaseException:
            await pc.close()
            raise

    return _payload(pc.localDescription), asyncio.ensure_future(_finish())
