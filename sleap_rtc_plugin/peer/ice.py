"""ICE configuration, and the one seam that lets loopback be an ICE candidate.

aioice's ``get_host_addresses`` deliberately leaves ``127.0.0.1`` out of the host
candidates (loopback candidates are forbidden by RFC 8445 for real deployments).
On a machine whose only interface is ``lo`` -- a CI container, a laptop with the
network off -- two peers on the same host then have no candidates at all and ICE
fails. :func:`enable_loopback_candidates` wraps that single function so that
``127.0.0.1`` is appended. It is opt-in (``allow_loopback=True`` on
:func:`~sleap_rtc_plugin.peer.connection.connect`/``accept``, or
``SLEAP_RTC_ICE_LOOPBACK=1``), process-wide once enabled, and idempotent; tests,
benchmarks and the single-machine demo use it. Production links never need it.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable

import aioice.ice
from aiortc import RTCConfiguration

from .ice_choice import normalize

log = logging.getLogger(__name__)

LOOPBACK_ENV = "SLEAP_RTC_ICE_LOOPBACK"
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses_with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = _original_get_host_addresses(use_ipv4, use_ipv6)
    if use_ipv4 and "127.0.0.1" not in addresses:
        addresses.append("127.0.0.1")
    return addresses


def loopback_requested(allow_loopback: bool | None = None) -> bool:
    if allow_loopback is not None:
        return allow_loopback
    return os.environ.get(LOOPBACK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def enable_loopback_candidates() -> None:
    """Make 127.0.0.1 an ICE host candidate for every connection in this process."""
    if aioice.ice.get_host_addresses is not _get_host_addresses_with_loopback:
        aioice.ice.get_host_addresses = _get_host_addresses_with_loopback
        log.info("ICE loopback candidates enabled (%s / allow_loopback)", LOOPBACK_ENV)


def rtc_configuration(ice_servers: Iterable[Any] = ()) -> RTCConfiguration:
    """An explicit configuration. An empty list matters: with none, aiortc queries a
    public STUN server and an unanswered one stalls ``setLocalDescription`` for 5 s.

    ``ice_servers`` items are :class:`RTCIceServer`, URL strings, or dicts with
    ``urls``/``username``/``credential``.
    """
    return RTCConfiguration(iceServers=normalize(ice_servers))
