"""Which event loop the coordinator runs on.

The coordinator's remaining cost per registration is websocket handshakes and frame I/O
on the event loop (docs/coordinator-scale.md); uvloop does that socket and scheduling
work in C. It is optional (the ``server`` extra, Linux and macOS): ``auto`` takes it where
it is installed and asyncio's own loop elsewhere, so a laptop or Windows coordinator
runs unchanged, and ``asyncio`` keeps the standard loop for debugging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

CHOICES = ("auto", "uvloop", "asyncio")
T = TypeVar("T")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def resolve(choice: str) -> str:
    """The loop ``choice`` means here: ``uvloop`` or ``asyncio``; raise ``ValueError``
    with what to do when it cannot be honoured."""
    if choice not in CHOICES:
        raise ValueError(f"server.event_loop must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "auto":
        return "uvloop" if uvloop_available() else "asyncio"
    if choice == "uvloop" and not uvloop_available():
        raise ValueError("server.event_loop = 'uvloop' but uvloop is not installed: pip install 'sleap-rtc-plugin[server]', or use 'auto'")
    return choice


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory for :class:`asyncio.Runner`; ``None`` is asyncio's default loop."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def run(main: Coroutine[Any, Any, T], name: str) -> T:
    """Run ``main`` to completion on the loop ``name`` (from :func:`resolve`)."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)
