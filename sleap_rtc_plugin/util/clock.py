"""The time a component reads, injectable so tests can move it instead of sleeping.

Leases and dispatch deadlines are measured against a :class:`Clock`: production uses
:data:`SYSTEM_CLOCK` (``time.time`` / ``time.monotonic``); a test hands a
:class:`ManualClock` and calls :meth:`ManualClock.advance` to live through a lease in
microseconds.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (stored deadlines)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (in-memory intervals)."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """Starts at the real time; moves only when told to (both readings together)."""

    def __init__(self) -> None:
        self._wall = time.time()
        self._mono = time.monotonic()

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._wall += seconds
        self._mono += seconds
