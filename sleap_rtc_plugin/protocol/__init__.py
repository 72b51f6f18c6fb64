"""One source of truth for every message on every wire.

``COORDINATOR`` decodes websocket frames between peers and the coordinator;
``PEER`` decodes data-channel frames between a client and a worker.
"""

from .base import MAX_FRAME_BYTES, PROTOCOL_VERSION, Message, ProtocolError, Registry
from .coordinator import COORDINATOR
from .peer import PEER
from . import transfer as _transfer  # noqa: F401  (registers file-transfer frames into PEER)
from . import queue as _queue  # noqa: F401  (registers queue/admin frames into COORDINATOR)

__all__ = ["COORDINATOR", "MAX_FRAME_BYTES", "PEER", "PROTOCOL_VERSION", "Message", "ProtocolError", "Registry"]
