"""The offer payload a client relays (through the coordinator) to open a link to a worker.

It rides inside a coordinator ``relay`` frame of kind ``offer``, so the coordinator
channel's registry never sees it; it is still a typed, versioned message decoded with
:func:`decode_offer` -- by the worker before it touches anything, and by the
coordinator when it needs the ``intent``/``job_id`` (draining checks). The ``job_id``
later names folders on the worker, so it is a :data:`~.names.JobId` checked here,
at the edge. Payloads from clients older than this message (no ``type`` field, same
fields) decode the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .base import Message, ProtocolError, Registry
from .names import JobId

#: An SDP offer of one data channel is a few KiB; 64 KiB leaves room for many candidates.
MAX_SDP = 64 * 1024

SIGNAL = Registry("signaling payload")


@dataclass
class SdpOffer:
    """What :func:`peer.connection.connect` hands its ``send_offer`` (``RTCSessionDescription`` fields)."""

    sdp: str
    type: Literal["offer"]

    def validate(self) -> None:
        if not self.sdp or len(self.sdp) > MAX_SDP:
            raise ProtocolError("bad_value", f"offer.sdp must be 1..{MAX_SDP} characters")


@SIGNAL.register
@dataclass
class PeerOffer(Message):
    """A client's offer to one worker: submit a new job, or attach to one it ran earlier."""

    TYPE = "peer_offer"
    offer: SdpOffer
    job_id: JobId
    intent: Literal["submit", "attach"] = "submit"


def decode_offer(payload: Any) -> PeerOffer:
    """The validated offer in a relay payload; :class:`ProtocolError` (``code`` stable) otherwise."""
    if isinstance(payload, dict) and "type" not in payload:
        payload = {**payload, "type": PeerOffer.TYPE}
    return SIGNAL.from_dict(payload)  # type: ignore[return-value]


__all__ = ["MAX_SDP", "PeerOffer", "SIGNAL", "SdpOffer", "decode_offer"]
