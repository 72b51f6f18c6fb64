"""Republish a remote job's training events where SLEAP's LossViewer listens.

SLEAP's ``LossViewer`` *binds* a SUB socket on ``publish_port`` and a PUB socket on
``controller_port``; a local sleap-nn *connects* to both. The bridge plays sleap-nn's
part on the client machine: events that arrived from the worker over the data
channel are sent as the same JSON strings, and a ``{"command": "stop"}`` from the
LossViewer's Stop Early button is handed to ``on_stop`` (which forwards it to the
worker). So the stock monitor draws remote curves without knowing they are remote.

A PUB socket drops what it sends before the LossViewer's subscription has reached
it (ZMQ's "slow joiner"); that would lose ``train_begin``. So :meth:`start` first
sends a few probe messages over a quarter second. A probe's ``what`` never matches a
real run, so the LossViewer ignores it. (An XPUB socket, which would *see* the
subscription arrive, never received one from a bound SUB here with libzmq 4.3.5.)
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from typing import Any, Awaitable, Callable

import zmq
import zmq.asyncio

log = logging.getLogger(__name__)

PROBES = 10
PROBE = json.dumps({"what": "sleap-rtc:probe", "event": "probe", "logs": None})

StopCallback = Callable[[], Awaitable[None] | None]


class LossViewerBridge:
    def __init__(
        self,
        publish_port: int,
        controller_port: int | None = None,
        *,
        on_stop: StopCallback | None = None,
        host: str = "127.0.0.1",
    ):
        self.publish_address = f"tcp://{host}:{publish_port}"
        self.controller_address = f"tcp://{host}:{controller_port}" if controller_port else None
        self._on_stop = on_stop
        self._ctx = zmq.asyncio.Context()
        self._pub: zmq.asyncio.Socket | None = None
        self._sub: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task | None = None
        self._seen_begin: set[str] = set()
        self.stop_requests = 0

    async def start(self) -> None:
        self._pub = self._ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, 1000)
        self._pub.connect(self.publish_address)
        if self.controller_address:
            self._sub = self._ctx.socket(zmq.SUB)
            self._sub.setsockopt(zmq.LINGER, 0)
            self._sub.subscribe(b"")
            self._sub.connect(self.controller_address)
            self._task = asyncio.ensure_future(self._read_commands())
        for _ in range(PROBES):
            await self._pub.send_string(PROBE)
            await asyncio.sleep(0.025)
        log.info("loss-viewer bridge publishing to %s, controller %s", self.publish_address, self.controller_address)

    async def publish(self, event: dict[str, Any]) -> None:
        """Send one sleap-nn event; a missed ``train_begin`` is synthesized first.

        The LossViewer ignores events whose ``what`` differs from the last
        ``train_begin`` it saw, so a client that attaches mid-training must announce
        the run before its first epoch.
        """
        if self._pub is None:
            return
        what = str(event.get("what", ""))
        if event.get("event") == "train_begin":
            self._seen_begin.add(what)
        elif what not in self._seen_begin:
            self._seen_begin.add(what)
            await self._pub.send_string(json.dumps({"what": what, "event": "train_begin", "logs": None}))
        await self._pub.send_string(json.dumps(event))

    async def _read_commands(self) -> None:
        assert self._sub is not None
        while True:
            try:
                raw = await self._sub.recv_string()
            except (asyncio.CancelledError, zmq.ZMQError):
                return
            try:
                command = json.loads(raw)
            except ValueError:
                log.warning("ignoring a malformed controller message from the loss viewer: %.80r", raw)
                continue
            if isinstance(command, dict) and command.get("command") == "stop":
                self.stop_requests += 1
                log.info("Stop Early pressed in the loss viewer; asking the worker to stop training")
                if self._on_stop is not None:
                    result = self._on_stop()
                    if inspect.isawaitable(result):
                        await result

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for sock in (self._pub, self._sub):
            if sock is not None:
                sock.close()
        self._pub = self._sub = None
        await asyncio.to_thread(self._ctx.term)

    async def __aenter__(self) -> "LossViewerBridge":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
