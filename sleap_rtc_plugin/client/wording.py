"""Job events in a biologist's words; the transport details stay in the log (``-v``)."""

from __future__ import annotations

from typing import Any


def sent_in_words(name: str, sent: Any) -> str:
    """What a transfer did, for a person: the path it took (direct, data channel) is for ``--verbose``."""
    if sent.via == "cache":
        return f"{name} is already on the worker: nothing to send"
    if sent.via == "shared":
        return f"the worker read {name} from the shared disk"
    return f"sent {name} ({sent.size / 1e6:.1f} MB at {sent.mb_per_s:.1f} MB/s)"


def path_in_words(path: dict) -> str:
    """How the link reached the worker, in a biologist's words (CLI and GUI)."""
    kind = path.get("kind")
    if kind == "host":
        return "connected to the worker directly"
    if kind == "srflx":
        return "connected to the worker peer-to-peer through the networks' routers"
    if kind == "relay":
        return "connected to the worker through the lab's relay server (slower than a direct link)"
    return "connected to the worker"
