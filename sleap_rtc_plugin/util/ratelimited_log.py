"""Collapse repeated log lines, so a peer that sends the same bad frame 48,000 times
costs a handful of lines in the journal rather than 48,000.

:class:`RepeatFilter` lets the first record of a kind through, then drops the same
kind (same logger, level and message template -- not the arguments, which a
hostile peer varies freely) for ``window`` seconds and counts it; the next one let
through carries ``(repeated N times in the last Ws)``. Attach it to the loggers
that log what a remote peer does: :func:`collapse_repeats`.
"""

from __future__ import annotations

import logging
import threading
import time

DEFAULT_WINDOW = 10.0
MAX_KINDS = 1024


class RepeatFilter(logging.Filter):
    def __init__(self, window: float = DEFAULT_WINDOW, *, clock=time.monotonic):
        super().__init__()
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            since, suppressed = self._seen.get(key, (None, 0))
            if since is not None and now - since < self.window:
                self._seen[key] = (since, suppressed + 1)
                return False
            if len(self._seen) >= MAX_KINDS:
                self._seen.clear()
            self._seen[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.msg} (repeated {suppressed} times in the last {self.window:g}s)"
        return True


def collapse_repeats(*loggers: logging.Logger, window: float = DEFAULT_WINDOW) -> RepeatFilter:
    """Install one :class:`RepeatFilter` on each logger (once; safe to call again)."""
    shared = RepeatFilter(window)
    for logger in loggers:
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(shared)
    return shared


__all__ = ["DEFAULT_WINDOW", "RepeatFilter", "collapse_repeats"]
