"""The coordinator: signaling server, its room store, and the async client peers use."""

from .client import CoordinatorClient, CoordinatorError, RelayRejected, admin_request, create_room
from .server import CoordinatorServer

__all__ = ["CoordinatorClient", "CoordinatorError", "CoordinatorServer", "RelayRejected", "admin_request", "create_room"]
