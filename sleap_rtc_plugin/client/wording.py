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
