"""``sleap-rtc worker``: run a worker, creating a room or an embedded coordinator when needed."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from ..config import default
from ..errors import UserError
from ..util.labels_arg import parse_labels

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    conn = parser.add_argument_group("coordinator and room")
    conn.add_argument("--server", metavar="URL", help="coordinator websocket URL (default: signaling_ws from config; unset = start an embedded coordinator)")
    conn.add_argument("--room-id", metavar="ID", help="room to join (default: create a new room)")
    conn.add_argument("--token", metavar="TOKEN", help="room token (or SLEAP_RTC_TOKEN)")
    conn.add_argument("--room-secret", metavar="SECRET", help="room secret clients must prove they know (or SLEAP_RTC_ROOM_SECRET_<ROOM_ID>); "
                      "a worker that creates its room makes one and puts it in the session string")
    conn.add_argument("--insecure-no-secret", action="store_true", default=None,
                      help="join an existing room without a room secret (legacy mode: anyone with the room token may use this worker)")
    conn.add_argument("--host", metavar="ADDR", help="address an embedded coordinator binds (default 127.0.0.1)")
    conn.add_argument("--port", type=int, metavar="PORT", help=f"port an embedded coordinator binds (default {default('server.port')})")
    me = parser.add_argument_group("this worker")
    me.add_argument("--name", metavar="NAME", help="display name (default: hostname)")
    me.add_argument("--label", action="append", metavar="KEY=VALUE", help="label for discovery filters; repeatable")
    me.add_argument("--data-dir", metavar="DIR", help="jobs, outbox and transfer cache (default: user data dir)")
    me.add_argument("--status-port", type=int, metavar="PORT", help=f"loopback status endpoint port (default {default('worker.status_port')}; 0 = any free port)")
    me.add_argument("--executor", choices=("local", "slurm"), help="where jobs run: local child processes (default), or one sbatch job each "
                    "on a Slurm cluster, with [worker.slurm] settings (docs/hpc.md)")
    me.add_argument("--checkpoint-interval", type=float, metavar="S", help="seconds between checkpoint relays to the client of a queued training job (default 60; 0 = off)")


async def run(args: argparse.Namespace) -> int:
    from .agent import Worker, WorkerOptions

    settings = args.settings.with_overrides(
        signaling_ws=args.server,
        room_id=args.room_id,
        token=args.token,
        server__host=args.host,
        server__port=args.port,
        worker__name=args.name,
        worker__data_dir=args.data_dir,
        worker__status_port=args.status_port,
        worker__checkpoint_interval=getattr(args, "checkpoint_interval", None),
        worker__insecure_no_secret=getattr(args, "insecure_no_secret", None),
        worker__executor=getattr(args, "executor", None),
    )
    labels = {**settings["worker.labels"], **parse_labels(args.label)}
    options = WorkerOptions.from_settings(settings, labels=labels, room_secret=args.room_secret)
    worker = Worker(options, **_probe(options))

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows: Ctrl-C arrives as KeyboardInterrupt
            pass
    try:
        await worker.start()
    except OSError as exc:
        raise UserError(_start_error(exc, options)) from None
    from .banner import print_banner

    await asyncio.to_thread(print_banner, worker)
    try:
        await stop.wait()
    finally:
        log.info("shutting down (a running job is stopped cleanly first)")
        await worker.stop()
    return 0


def _probe(options) -> dict:
    """A Slurm worker advertises the cluster's GPUs (sinfo), not the login node's."""
    if options.executor_factory is None:
        return {}
    from .slurm.capacity import probe_for

    return {"probe": probe_for(options.executor_factory.opts)}


def _start_error(exc: OSError, options) -> str:
    """One line for a port the worker could not take (a second worker on the same machine, usually)."""
    import errno

    if exc.errno in (errno.EADDRINUSE, errno.EACCES):
        port = getattr(options, "embedded_port", None)
        return (f"cannot start the worker: {exc.strerror or 'address in use'} (embedded coordinator port {port}); is another worker or "
                "coordinator running here? stop it, or pick free ports with --port N and --status-port N (0 = any free port)")
    return f"cannot start the worker: {exc.strerror or exc}"


__all__ = ["add_arguments", "parse_labels", "run"]
