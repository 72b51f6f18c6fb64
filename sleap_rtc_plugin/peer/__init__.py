"""The client<->worker peer link: aiortc connection, room-secret auth, file transfer.

Typical use::

    link = await connect(send_offer, role="client", peer_id="me")      # or accept(...)
    await link.authenticate(lookup_secret(room_id))
    await link.send_file("job.zip")
    await link.send(JobSubmit(...)); reply = await link.recv()

Pass ``fastpaths=FastPaths.from_settings(settings)`` to ``connect``/``accept`` to let
transfers use shared storage or a direct TLS stream when the peers allow it.
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
from .fastpath import FastPaths
from .ice import enable_loopback_candidates
from .link import PeerLink
from .file_names import sanitize_name
from .staging import FileReceiver
from .transfer_recv import ReceivedFile
from .transfer_send import SentFile

__all__ = [
    "AuthError", "ChannelTimeoutError", "ConnectError", "FastPaths", "FileReceiver", "IceFailedError", "LinkClosedError",
    "NoAnswerError", "PeerLink", "PeerLinkError", "ReceivedFile", "SentFile", "TransferError", "accept",
    "connect", "enable_loopback_candidates", "sanitize_name",
]
