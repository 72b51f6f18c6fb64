"""Command-line glue for ``sleap-rtc server`` and ``sleap-rtc room create``.

The top-level ``sleap-rtc`` CLI adds these arguments to its subcommands and calls the
runners; ``python -m sleap_rtc_plugin.coordinator`` runs the server on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time

from .client import CoordinatorError, create_room
from .server import CoordinatorServer
from ..config import load_settings
from .store import RoomStore, default_db_path

log = logging.getLogger(__name__)

DEFAULT_URL = "ws://127.0.0.1:8765"


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags override the config file's ``[server]`` table (``sleap-rtc config show``)."""
    parser.add_argument("--host", default=None, help="interface to bind (default server.host = 127.0.0.1; use 0.0.0.0 to serve a lab network)")
    parser.add_argument("--port", type=int, default=None, help="TCP port for websockets and GET /health (default server.port = 8765; 0 = any free port)")
    parser.add_argument("--db", default=None, help=f"SQLite file for rooms and jobs (default server.db, else {default_db_path()}; ':memory:' keeps nothing)")
    parser.add_argument("--heartbeat-interval", type=float, default=None, help="seconds between server pings (default server.heartbeat_interval = 10)")
    parser.add_argument("--heartbeat-timeout", type=float, default=None, help="drop a peer silent for this many seconds (default server.heartbeat_timeout = 30)")
    parser.add_argument("--lease-seconds", type=float, default=60.0, help="a dispatched job's lease, renewed by its worker's heartbeats (default 60)")
    parser.add_argument("--reconnect-grace", type=float, default=60.0, help="extra seconds a silent worker keeps its job before it is requeued (default 60)")


def _server_settings(args: argparse.Namespace):
    settings = getattr(args, "settings", None) or load_settings()
    return settings.with_overrides(
        server__host=args.host, server__port=args.port, server__db=args.db,
        server__heartbeat_interval=args.heartbeat_interval, server__heartbeat_timeout=args.heartbeat_timeout,
    )


def _ensure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def run_server(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM, then close every connection and the store cleanly."""
    _ensure_logging()
    settings = _server_settings(args)
    host, port = settings["server.host"], settings["server.port"]
    server = CoordinatorServer(
        host,
        port,
        settings["server.db"],
        heartbeat_interval=settings["server.heartbeat_interval"],
        heartbeat_timeout=settings["server.heartbeat_timeout"],
        lease_seconds=getattr(args, "lease_seconds", 60.0),
        reconnect_grace=getattr(args, "reconnect_grace", 60.0),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port", file=sys.stderr)
        return 2
    print(f"coordinator listening on {server.url}", flush=True)
    try:
        await stop.wait()
        log.info("shutting down on signal")
    finally:
        await server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0


def add_room_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="room_command", required=True)
    add_room_create_arguments(sub.add_parser("create", help="create a room; prints its id and token (shown once)"))


def add_room_create_arguments(create: argparse.ArgumentParser) -> None:
    """Arguments of ``room create`` alone (the top-level CLI owns the ``room`` parser)."""
    create.set_defaults(room_command="create")
    where = create.add_mutually_exclusive_group()
    where.add_argument("--server", default=DEFAULT_URL, help=f"coordinator URL (default {DEFAULT_URL})")
    where.add_argument("--db", default=None, help="create directly in this coordinator database instead of over the network")
    create.add_argument("--ttl-hours", type=float, default=720.0, help="room lifetime in hours (default 720 = 30 days)")
    create.add_argument("--json", action="store_true", help="print JSON instead of text")


async def run_room_async(args: argparse.Namespace) -> int:
    if args.room_command != "create":
        print(f"error: unknown room command {args.room_command!r}", file=sys.stderr)
        return 2
    try:
        if args.db:
            store = RoomStore(args.db)
            await store.open()
            try:
                room_id, token, expires_at = await store.create_room(args.ttl_hours)
            finally:
                await store.close()
        else:
            room_id, token, expires_at = await create_room(args.server, args.ttl_hours)
    except CoordinatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"room_id": room_id, "token": token, "expires_at": expires_at}))
    else:
        expiry = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(expires_at))
        print(f"room id:  {room_id}")
        print(f"token:    {token}")
        print(f"expires:  {expiry}")
        print("The token is shown only now; the coordinator stores only its hash. Keep it safe.")
    return 0


def run_room(args: argparse.Namespace) -> int:
    """Synchronous entry for ``sleap-rtc room ...``; returns the exit code."""
    return asyncio.run(run_room_async(args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sleap_rtc_plugin.coordinator", description="Run the sleap-rtc coordinator.")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    return asyncio.run(run_server(args))
