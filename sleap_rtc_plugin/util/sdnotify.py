"""A dependency-free ``sd_notify`` for ``Type=notify`` units.

The worker sends ``READY=1`` only after the coordinator accepted its registration, so
``systemctl start`` returns when the worker is really reachable, and pings ``WATCHDOG=1``
only while its coordinator link is healthy, so systemd restarts a worker that is alive
but cut off. Everything is a no-op outside systemd (``NOTIFY_SOCKET`` unset), and a send
never blocks the event loop: the socket is non-blocking and a full queue drops the ping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Callable, Mapping

log = logging.getLogger(__name__)


class SdNotifier:
    """Sends datagrams to the socket named by ``NOTIFY_SOCKET`` (``@name`` = abstract)."""

    def __init__(self, address: str | None = None, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        self.address = address if address is not None else env.get("NOTIFY_SOCKET") or None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, state: str) -> bool:
        """Send one state string; True when it was handed to the socket."""
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.connect(target)
                sock.send(state.encode("utf-8"))
            return True
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %s failed: %s", self.address, exc)
                self._warned = True
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text.replace(chr(10), ' ')}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of ``WATCHDOG_USEC``), or None when no watchdog is set.

    ``WATCHDOG_PID``, when present, must be this process: a child that inherited the
    environment must not feed the parent's watchdog.
    """
    env = os.environ if env is None else env
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None


_default: SdNotifier | None = None


def _notifier() -> SdNotifier:
    global _default
    if _default is None or _default.address != (os.environ.get("NOTIFY_SOCKET") or None):
        _default = SdNotifier()
    return _default


def ready(status: str | None = None) -> bool:
    return _notifier().ready(status)


def watchdog() -> bool:
    return _notifier().watchdog()


def status(text: str) -> bool:
    return _notifier().status(text)


def stopping() -> bool:
    return _notifier().stopping()


class WatchdogPinger:
    """Pings ``WATCHDOG=1`` every ``interval`` seconds while ``healthy()`` is True.

    When the coordinator link is down the pings stop and systemd restarts the service
    after ``WatchdogSec=``; reconnect logic therefore has that long to recover.
    ``interval`` defaults to ``WATCHDOG_USEC / 2``; with no watchdog configured
    ``start()`` does nothing.
    """

    def __init__(
        self,
        healthy: Callable[[], bool],
        *,
        interval: float | None = None,
        notifier: SdNotifier | None = None,
    ):
        self.healthy = healthy
        self.interval = interval if interval is not None else watchdog_interval()
        self.notifier = notifier or SdNotifier()
        self.pings = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None] | None:
        if self._task is None and self.interval and self.notifier.enabled:
            self._task = asyncio.create_task(self._run(), name="sd-watchdog")
        return self._task

    async def _run(self) -> None:
        was_healthy = True
        while True:
            try:
                ok = bool(self.healthy())
            except Exception:
                log.exception("watchdog health check raised; treating as unhealthy")
                ok = False
            if ok:
                if self.notifier.watchdog():
                    self.pings += 1
            if ok != was_healthy:
                log.info("watchdog pings %s", "resumed" if ok else "paused: coordinator link unhealthy")
                was_healthy = ok
            await asyncio.sleep(self.interval)  # type: ignore[arg-type]

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
