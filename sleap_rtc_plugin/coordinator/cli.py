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
import os
import signal
import ssl
import sys
import time

from . import runtime
from .client import CoordinatorError, create_room
from .limits import EdgeLimits
from .queue_limits import QueueLimits
from .server import CoordinatorServer
from .turn import TurnConfig
from .tls import TLSConfigError, server_context
from ..config import default, default_server_url, load_settings
from .store import RoomStore, default_db_path

log = logging.getLogger(__name__)

DEFAULT_URL = default_server_url()
ADMIN_TOKEN_ENV = "SLEAP_RTC_ADMIN_TOKEN"


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags override the config file's ``[server]`` table (``sleap-rtc config show``)."""
    parser.add_argument("--host", default=None, help="interface to bind (default server.host = 127.0.0.1; use 0.0.0.0 to serve a lab network)")
    parser.add_argument("--port", type=int, default=None, help=f"TCP port for websockets and GET /health (default server.port = {default('server.port')}; 0 = any free port)")
    parser.add_argument("--db", default=None, help=f"SQLite file for rooms and jobs (default server.db, else {default_db_path()}; ':memory:' keeps nothing)")
    parser.add_argument("--heartbeat-interval", type=float, default=None, help="seconds between server pings (default server.heartbeat_interval = 10)")
    parser.add_argument("--heartbeat-timeout", type=float, default=None, help="drop a peer silent for this many seconds (default server.heartbeat_timeout = 30)")
    parser.add_argument("--lease-seconds", type=float, default=60.0, help="a dispatched job's lease, renewed by its worker's heartbeats (default 60)")
    parser.add_argument("--reconnect-grace", type=float, default=60.0, help="extra seconds a silent worker keeps its job before it is requeued (default 60)")
    parser.add_argument("--tls-cert", metavar="PEM", default=None, help="serve wss:// with this PEM certificate (chain) (default server.tls_cert; needs --tls-key)")
    parser.add_argument("--tls-key", metavar="PEM", default=None, help="private key of --tls-cert, PEM (default server.tls_key)")
    parser.add_argument("--room-creation", choices=("open", "admin"), default=None,
                        help="who may create rooms: open = anyone who reaches the server, rate-limited per address; admin = only with an admin token (default server.room_creation = open)")
    parser.add_argument("--max-room-ttl-hours", type=float, default=None, help="longest room lifetime a client may ask for (default server.max_room_ttl_hours = 720)")
    parser.add_argument("--compression", action=argparse.BooleanOptionalAction, default=None,
                        help="accept permessage-deflate from peers that offer it: ~5x fewer bytes per peer list for slow links, "
                             "at the coordinator's largest per-reply CPU cost (default server.compression = false)")
    parser.add_argument("--event-loop", choices=runtime.CHOICES, default=None,
                        help="event loop: uvloop serves more peers per core; auto = uvloop where installed (the [server] extra), else asyncio's (default server.event_loop = auto)")
    parser.add_argument("--allow-room-token-workers", action="store_true", default=None,
                        help="let workers registered with only the room token take queued jobs (default server.allow_room_token_workers = false: "
                             "only workers enrolled with `sleap-rtc admin token create`; per room: `sleap-rtc admin room-policy`)")


def _server_settings(args: argparse.Namespace):
    settings = getattr(args, "settings", None) or load_settings()
    return settings.with_overrides(
        server__host=args.host, server__port=args.port, server__db=args.db,
        server__heartbeat_interval=args.heartbeat_interval, server__heartbeat_timeout=args.heartbeat_timeout,
        server__allow_room_token_workers=getattr(args, "allow_room_token_workers", None),
        server__tls_cert=getattr(args, "tls_cert", None), server__tls_key=getattr(args, "tls_key", None),
        server__room_creation=getattr(args, "room_creation", None), server__max_room_ttl_hours=getattr(args, "max_room_ttl_hours", None),
        server__compression=getattr(args, "compression", None),
        server__event_loop=getattr(args, "event_loop", None),
    )


def edge_limits(settings) -> EdgeLimits:
    """The per-address limits and room policy from the ``server.*`` settings."""
    return EdgeLimits(
        max_connections_per_address=settings["server.max_connections_per_address"],
        rooms_per_hour=settings["server.rooms_per_hour"],
        failed_auth_per_minute=settings["server.failed_auth_per_minute"],
        max_room_ttl_hours=settings["server.max_room_ttl_hours"],
        room_creation=settings["server.room_creation"],
        limit_loopback=settings["server.limit_loopback"],
    )


def tls_from_settings(settings) -> ssl.SSLContext | None:
    cert, key = settings["server.tls_cert"], settings["server.tls_key"]
    if not cert and not key:
        return None
    if not cert or not key:
        raise TLSConfigError("give both --tls-cert and --tls-key (server.tls_cert / server.tls_key), or neither")
    return server_context(cert, key)


def _ensure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(args: argparse.Namespace) -> int:
    """Entry of ``sleap-rtc server``: :func:`run_server` on the configured event loop."""
    try:
        loop = runtime.resolve(_server_settings(args)["server.event_loop"])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runtime.tune_gc()
    return runtime.run(run_server(args, loop_name=loop), loop)


async def run_server(args: argparse.Namespace, *, loop_name: str = "asyncio") -> int:
    """Serve until SIGINT/SIGTERM, then close every connection and the store cleanly."""
    _ensure_logging()
    settings = _server_settings(args)
    host, port = settings["server.host"], settings["server.port"]
    try:
        limits, context = edge_limits(settings), tls_from_settings(settings)
        queue_limits = QueueLimits(settings["server.max_jobs_per_room"], settings["server.max_jobs_per_client"])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = CoordinatorServer(
        host,
        port,
        settings["server.db"],
        heartbeat_interval=settings["server.heartbeat_interval"],
        heartbeat_timeout=settings["server.heartbeat_timeout"],
        lease_seconds=getattr(args, "lease_seconds", 60.0),
        reconnect_grace=getattr(args, "reconnect_grace", 60.0),
        allow_room_token_workers=bool(settings["server.allow_room_token_workers"]),
        queue_limits=queue_limits,
        limits=limits,
        ssl_context=context,
        turn=TurnConfig.from_settings(settings),
        compression=bool(settings["server.compression"]),
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
    log.info("event loop: %s", loop_name)
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
    create.add_argument("--ttl-hours", type=float, default=720.0, help="room lifetime in hours (default 720 = 30 days; the server caps it at its server.max_room_ttl_hours)")
    create.add_argument("--admin-token", default=None, help=f"admin token, for a coordinator that lets only administrators create rooms (default ${ADMIN_TOKEN_ENV})")
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
            admin_token = getattr(args, "admin_token", None) or os.environ.get(ADMIN_TOKEN_ENV) or None
            room_id, token, expires_at = await create_room(args.server, args.ttl_hours, admin_token=admin_token)
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
    return serve(args)
