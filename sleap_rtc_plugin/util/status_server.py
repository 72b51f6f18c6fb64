"""The worker's local status endpoint: ``GET /status`` on 127.0.0.1, JSON.

``sleap-rtc-service status`` merges what the OS knows (is the unit active, how often did
it restart) with what only the worker knows (is it connected, what job is running). The
worker hands in a ``snapshot`` callable; this server only serialises it. It binds
loopback by default, serves no secrets, and answers each request on its own so a slow
or malformed client never blocks the worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any, Callable

from .. import __version__
from ..config import default

log = logging.getLogger(__name__)

MAX_REQUEST = 8192
READ_TIMEOUT = 5.0


class StatusServer:
    """Serve ``snapshot()`` as JSON at ``GET /status``; ``port=0`` picks a free port.

    Snapshot fields (the worker fills them): ``coordinator`` ``{connected, url}``,
    ``room_id``, ``peer_id``, ``status`` (available|reserved|busy), ``job``
    ``{id, kind, progress}`` or null, ``gpus``, ``last_error``. The server adds
    ``version``, ``pid`` and ``started_at`` when the snapshot leaves them out.
    """

    def __init__(self, snapshot: Callable[[], dict[str, Any]], host: str = "127.0.0.1", port: int = default("worker.status_port")):
        self.snapshot = snapshot
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self.started_at = time.time()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self._requested_port, limit=MAX_REQUEST)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("status endpoint listening on http://%s:%d/status", self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
            log.info("status endpoint stopped")

    async def __aenter__(self) -> "StatusServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _body(self) -> dict[str, Any]:
        data = dict(self.snapshot())
        data.setdefault("version", __version__)
        data.setdefault("pid", os.getpid())
        data.setdefault("started_at", self.started_at)
        return data

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                await self._send(writer, 400, {"error": "malformed request line"})
                return
            method, target = parts[0], parts[1].split("?", 1)[0]
            if target not in ("/status", "/status/"):
                await self._send(writer, 404, {"error": f"no such path {target}; try GET /status"})
            elif method not in ("GET", "HEAD"):
                await self._send(writer, 405, {"error": "only GET is supported"}, extra="Allow: GET, HEAD\r\n")
            else:
                try:
                    body = self._body()
                except Exception as exc:
                    log.exception("status snapshot failed")
                    await self._send(writer, 500, {"error": f"snapshot failed: {exc}"})
                    return
                await self._send(writer, 200, body, head_only=method == "HEAD")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("status request failed")
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, code: int, body: dict[str, Any], *, head_only: bool = False, extra: str = "") -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}[code]
        payload = json.dumps(body, default=str).encode("utf-8")
        header = (
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nCache-Control: no-store\r\n{extra}Connection: close\r\n\r\n"
        )
        writer.write(header.encode("latin-1") + (b"" if head_only else payload))
        await writer.drain()
