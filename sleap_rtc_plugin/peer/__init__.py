"""The client<->worker peer link: aiortc connection, room-secret auth, file transfer.

Typical use::

    link = await connect(send_offer, role="client", peer_id="me")      # or accept(...)
    await link.authenticate(lookup_secret(room_id))
    await link.send_file("job.zip")
    await link.send(JobSubmit(...)); reply = await link.recv()
"""

from .connection import accept, connect
from .errors import (
    AuthError,
    ChannelTimeoutError,
    ConnectError,
    IceFailedError,
    LinkClosedError,
    NoAnswerError,
    PeerLinkError,
    TransferError,
)
from .ice import enable_loopback_candidates
from .link import PeerLink
from .transfer import FileReceiver, ReceivedFile, SentFile, sanitize_name

__all__ = [
    "AuthError", "ChannelTimeoutError", "ConnectError", "FileReceiver", "IceFailedError", "LinkClosedError",
    "NoAnswerError", "PeerLink", "PeerLinkError", "ReceivedFile", "SentFile", "TransferError", "accept",
    "connect", "enable_loopback_candidates", "sanitize_name",
]
