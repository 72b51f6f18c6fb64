"""What the coordinator pushed to one client: relays and queue events, kept until claimed.

Each arrival is queued (bounded: the oldest unclaimed one is dropped) for the
``next_relay``/``next_push`` waiters and handed to every registered handler; async
handlers run as tasks the mailbox owns, so their failures are logged, never lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
from typing import Any, Callable

from ..protocol.coordinator import Relay
from ..protocol.queue import JobDispatch, QueueUpdate
from ..util.tasks import TaskSet
from .oneshot import RelayRejected

log = logging.getLogger(__name__)

#: Relays kept for ``next_relay``; older unclaimed ones are dropped.
INBOX_SIZE = 256

RelayHandler = Callable[[Relay], Any]
#: Unsolicited coordinator messages other than relays (queue updates, job dispatches).
Pushed = QueueUpdate | JobDispatch
PushHandler = Callable[[Pushed], Any]


class Mailbox:
    def __init__(self) -> None:
        self.relays: collections.deque[Relay] = collections.deque(maxlen=INBOX_SIZE)
        self.pushed: collections.deque[Pushed] = collections.deque(maxlen=INBOX_SIZE)
        #: Set (and replaced) on every arrival; waiters wait on the current one.
        self.changed = asyncio.Event()
        self.relay_handlers: list[RelayHandler] = []
        self.push_handlers: list[PushHandler] = []
        self._handler_tasks = TaskSet(log, "coordinator handlers")

    def deliver(self, relay: Relay) -> None:
        if len(self.relays) == self.relays.maxlen:
            log.warning("relay inbox full; dropping the oldest unclaimed relay")
        self.relays.append(relay)
        self._wake_and_call(relay, self.relay_handlers)

    def push(self, msg: Pushed) -> None:
        self.pushed.append(msg)
        self._wake_and_call(msg, self.push_handlers)

    def take_relay(self, kind: str | None, source: str | None) -> Relay | None:
        """The oldest relay matching; a ``reject`` from ``source`` raises :class:`RelayRejected`."""
        for i, relay in enumerate(self.relays):
            if source is not None and relay.source != source:
                continue
            if kind is None or relay.kind == kind:
                del self.relays[i]
                return relay
            if relay.kind == "reject" and source is not None:
                del self.relays[i]
                payload = relay.payload
                raise RelayRejected(
                    str(payload.get("code", "rejected")),
                    str(payload.get("message", f"peer {source} rejected the request")),
                    source=source,
                )
        return None

    def take_push(self, type_name: str | None, job_id: str | None, where: Callable[[Pushed], bool] | None) -> Pushed | None:
        for i, msg in enumerate(self.pushed):
            if (type_name is None or msg.TYPE == type_name) and (job_id is None or msg.job_id == job_id) and (where is None or where(msg)):
                del self.pushed[i]
                return msg
        return None

    @staticmethod
    def remove(handlers: list[Any], callback: Callable[[Any], Any]) -> None:
        with contextlib.suppress(ValueError):
            handlers.remove(callback)

    def _wake_and_call(self, msg: Any, handlers: list[Callable[[Any], Any]]) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()
        for handler in list(handlers):
            try:
                result = handler(msg)
            except Exception:  # noqa: BLE001 - a handler bug must not stop the reader
                log.exception("relay handler %r failed", handler)
                continue
            if inspect.isawaitable(result):
                self._handler_tasks.spawn(result)
