"""How a coordinator process runs: its event loop and its garbage collector.

The coordinator's remaining cost per registration is websocket handshakes and frame I/O
on the event loop (docs/coordinator-scale.md); uvloop does that socket and scheduling
work in C. It is optional (the ``server`` extra, Linux and macOS): ``auto`` takes it where
it is installed and asyncio's own loop elsewhere, so a laptop or Windows coordinator
runs unchanged, and ``asyncio`` keeps the standard loop for debugging.

Each connection is a few hundred long-lived container objects (transport, protocol,
tasks, futures, buffers). While thousands of peers join, CPython's default thresholds
(700, 10, 10) run a full collection each time that population grows by a quarter, and
every one walks all of it: measured at 5,000 peers, ~30 % of the CPU a registration
cost (docs/coordinator-scale.md). A standalone coordinator collects less often instead;
cyclic garbage then waits longer (at most ~50,000 young objects, a few MB), and steady
state is unchanged.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

CHOICES = ("auto", "uvloop", "asyncio")
#: ``gc.set_threshold`` for a standalone coordinator process (CPython's default: 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)
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


def tune_gc() -> None:
    """Collect less often in a process that holds thousands of long-lived connections;
    only for the standalone ``sleap-rtc server`` (an embedded coordinator lives in a
    worker, whose process it does not own)."""
    gc.set_threshold(*GC_THRESHOLDS)
