"""What a client attaching late is shown first: the job's epochs so far and its last log lines.

SLEAP's LossViewer draws a curve from ``epoch_begin``/``epoch_end`` events, so replaying those (and
the ``train_begin`` that opens each model) redraws the curve as if the viewer had been
open from the start; batch events are not kept. The log tail is what "Show log" shows
and what a failure report carries. Both are bounded, whatever the job prints.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

#: Events worth replaying: the ones that draw the loss curve and mark model boundaries.
REPLAYED_EVENTS = frozenset({"train_begin", "epoch_begin", "epoch_end", "train_end"})
MAX_EVENTS = 5000
LOG_TAIL_LINES = 200


@dataclass
class JobReplay:
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))

    def record(self, event: dict[str, Any]) -> None:
        """Keep a progress event if it belongs to the curve."""
        if event.get("event") in REPLAYED_EVENTS:
            self.events.append(event)

    def record_log(self, line: str) -> None:
        self.log_tail.append(line)

    def tail(self, n: int = 20) -> list[str]:
        return list(self.log_tail)[-n:]
