"""``sleap-rtc client-train`` and ``sleap-rtc client-track``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from ..errors import UserError
from ..util.labels_arg import parse_labels
from .api import ConnectionSpec, JobHandle, JobOutcome, QueueOptions, RemoteError, attach, list_workers, submit_inference, submit_training
from .progress import ProgressDisplay
from .selection import WorkerInfo

log = logging.getLogger(__name__)


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    conn = parser.add_argument_group("which worker (pick one way)")
    conn.add_argument("--session-string", metavar="S", help="the sleap-session:… string a worker printed (room, token and worker in one)")
    conn.add_argument("--room-id", metavar="ID", help="room to look for workers in (with --token); lists workers to choose from")
    conn.add_argument("--token", metavar="TOKEN", help="room token")
    conn.add_argument("--auto-select", action="store_true", help="use the available worker with the most free GPU memory")
    conn.add_argument("--worker-id", metavar="PEER", help="use this worker (its peer id)")
    conn.add_argument("--server", metavar="URL", help="coordinator websocket URL (default: signaling_ws from config, or the session string's)")
    filters = parser.add_argument_group("worker filters")
    filters.add_argument("--min-gpu-memory", type=int, metavar="MB", help="only workers with at least this much free GPU memory")
    filters.add_argument("--label", action="append", metavar="KEY=VALUE", help="only workers with this label (with --queue the value is a glob, e.g. gpu=a100*); repeatable")
    queue = parser.add_argument_group("job queue (the coordinator picks the worker and requeues the job if it dies)")
    queue.add_argument("--queue", action="store_true", help="submit through the coordinator's queue instead of picking a worker now; "
                                                            "with --attach JOB_ID, follow a job already in the queue (give its --pkg-path again)")
    queue.add_argument("--gpus", type=int, default=0, metavar="N", help="with --queue: only workers with at least N GPUs")
    queue.add_argument("--priority", type=int, default=0, metavar="P", help="with --queue: higher runs first (default 0)")
    queue.add_argument("--max-retries", type=int, default=3, metavar="N", help="with --queue: retries after infrastructure failures (default 3)")
    sec = parser.add_argument_group("security")
    sec.add_argument("--room-secret", metavar="SECRET", help="room secret (default: the one in the session string, else SLEAP_RTC_ROOM_SECRET_<ROOM_ID> or the saved credentials)")


PKG_HELP = {
    "training": "a ready training package: the <labels>.slp.training_job.zip SLEAP's \"Export training job package\" writes, or a zip "
                "with that layout (docs/user-guide.md, \"Package layout\"); to train from labels + a sleap-nn config, use `sleap-rtc train`",
    "inference": "a ready inference package: a zip with models/<run>/ and a jobs.yaml 'inference' list (docs/user-guide.md, "
                 "\"Package layout\"), as the SLEAP plugin builds one; a .training_job.zip is a training package and is refused here; "
                 "to predict on a video with trained models, use `sleap-rtc track`",
}


def _add_job_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--pkg-path", metavar="PKG", help=PKG_HELP[what])
    parser.add_argument("--project-dir", metavar="DIR", help="SLEAP project folder that receives the results (default: the package's folder); "
                                                            "it also keeps each job's owner credential in .sleap-rtc/owners/")
    parser.add_argument("--attach", metavar="JOB_ID", help="re-attach to an earlier job and fetch its results instead of submitting; "
                                                          "run it with the --project-dir the job was submitted from (only that project holds the "
                                                          "job's owner credential)")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a live progress display")
    _add_connection_arguments(parser)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    _add_job_arguments(parser, "training")
    zmq = parser.add_argument_group("SLEAP loss viewer")
    zmq.add_argument("--publish-port", type=int, metavar="PORT", help="republish training events to a SLEAP LossViewer bound on this port")
    zmq.add_argument("--controller-port", type=int, metavar="PORT", help="receive Stop Early from a SLEAP LossViewer bound on this port")


def add_track_arguments(parser: argparse.ArgumentParser) -> None:
    _add_job_arguments(parser, "inference")
    parser.add_argument("--input", action="append", default=[], metavar="FILE",
                        help="send FILE beside the package, to inputs/<its name> on the worker (a video jobs.yaml names as "
                             "inputs/<name>); the worker caches it, so the same video is sent once; repeatable")


def parse_inputs(files: list[str]) -> dict[str, Path]:
    """``--input`` files by the name they get on the worker; a clear error for a missing file or a clash."""
    inputs: dict[str, Path] = {}
    for item in files:
        path = Path(item).expanduser().resolve()
        if not path.is_file():
            raise UserError(f"--input {item}: no such file")
        if path.name in inputs:
            raise UserError(f"--input {item}: another input is also named {path.name!r} (inputs/{path.name} on the worker)")
        inputs[path.name] = path
    return inputs


def spec_from_args(args: argparse.Namespace) -> ConnectionSpec:
    return ConnectionSpec(
        server_url=args.server,
        room_id=args.room_id,
        token=args.token,
        session_string=args.session_string,
        worker_id=args.worker_id,
        auto_select=args.auto_select,
        min_gpu_memory_mb=args.min_gpu_memory,
        labels=parse_labels(args.label),
        room_secret=args.room_secret,
    ).resolved(args.settings)


async def _pick_interactively(spec: ConnectionSpec) -> ConnectionSpec:
    """Numbered list of workers; ``r`` refreshes, a number picks."""
    while True:
        workers = await list_workers(spec)
        if not workers:
            print(f"No workers in room {spec.room_id} match. Start one with `sleap-rtc worker`, then press r.")
        else:
            print(f"\n    {'name':<20} {'GPU':<24} {'memory':<20} {'status':<10} host labels")
            for i, w in enumerate(workers, 1):
                print(f"{i:>2}. {w.summary()}")
        choice = (await asyncio.to_thread(input, "Pick a worker number, r to refresh, q to quit: ")).strip().lower()
        if choice == "q":
            raise UserError("no worker chosen")
        if choice.isdigit() and 1 <= int(choice) <= len(workers):
            chosen: WorkerInfo = workers[int(choice) - 1]
            spec.worker_id = chosen.peer_id
            return spec


async def _run_job(args: argparse.Namespace, kind: str) -> int:
    try:
        spec = spec_from_args(args)
    except RemoteError as exc:
        raise UserError(str(exc)) from None
    queue = None
    if getattr(args, "queue", False):
        queue = QueueOptions(min_gpu_memory_mb=args.min_gpu_memory or 0, gpu_count=args.gpus, labels=parse_labels(args.label),
                             worker_id=args.worker_id, priority=args.priority, max_retries=args.max_retries)
    elif not (spec.worker_id or spec.auto_select):
        if sys.stdin.isatty():
            spec = await _pick_interactively(spec)
        else:
            spec.auto_select = True
    if args.attach:
        project = Path(args.project_dir or ".").resolve()
        pkg = None
        if queue is not None:
            if not args.pkg_path:
                raise UserError("--attach with --queue also needs --pkg-path PKG: a queued job's package goes from this client to the worker that takes it")
            pkg = Path(args.pkg_path).expanduser().resolve()
            if not pkg.is_file():
                raise UserError(f"package {pkg} does not exist")
        handle = attach(args.attach, spec, project_dir=project, kind=kind,  # type: ignore[arg-type]
                        publish_port=getattr(args, "publish_port", None), controller_port=getattr(args, "controller_port", None),
                        queue=queue, package_path=pkg, inputs=parse_inputs(getattr(args, "input", None) or []) if queue is not None else None)
    else:
        if not args.pkg_path:
            raise UserError("give --pkg-path PKG (or --attach JOB_ID)")
        pkg = Path(args.pkg_path).expanduser().resolve()
        if not pkg.is_file():
            raise UserError(f"package {pkg} does not exist")
        if pkg.suffix in (".slp", ".yaml", ".yml", ".mp4", ".avi"):
            better = "sleap-rtc train --config CONFIG.yaml --train-labels LABELS.slp" if kind == "train" else "sleap-rtc track -i VIDEO -m MODEL_DIR"
            raise UserError(f"{pkg.name} is not a job package (a .zip); to send labels, configs or videos as they are, use `{better}`")
        project = Path(args.project_dir).resolve() if args.project_dir else pkg.parent
        if kind == "train":
            handle = submit_training(pkg, spec, project_dir=project, publish_port=args.publish_port, controller_port=args.controller_port, queue=queue)
        else:
            handle = submit_inference(pkg, spec, project_dir=project, queue=queue, inputs=parse_inputs(args.input))
    outcome = await follow(handle, plain=args.no_progress)
    print(describe_outcome(outcome))
    return 0


async def follow(handle: JobHandle, *, plain: bool = False) -> JobOutcome:
    """Show a job's progress until it ends; Ctrl-C asks whether to cancel or detach."""
    display = ProgressDisplay(handle.job_id, plain=plain)
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    try:
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
    except (NotImplementedError, RuntimeError):
        pass

    async def watch_interrupt() -> None:
        await interrupted.wait()
        display.pause()
        answer = "d"
        if sys.stdin.isatty():
            answer = (await asyncio.to_thread(input, f"\nCancel job {handle.job_id} on the worker [c], or detach and let it run [d]? ")).strip().lower()[:1]
        if answer == "c":
            await handle.cancel()
        else:
            print(f"Detaching. Fetch the results later with: --attach {handle.job_id} --project-dir {handle.project_dir}")
            await handle.detach()

    watcher = asyncio.ensure_future(watch_interrupt())
    try:
        with display:
            async for event in handle.events():
                display.update(event)
        return await handle.result()
    except RemoteError as exc:
        raise UserError(str(exc)) from None
    finally:
        watcher.cancel()
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass


def describe_outcome(outcome: JobOutcome) -> str:
    if outcome.detached:
        return f"Job {outcome.job_id} keeps running on the worker; fetch it with --attach {outcome.job_id}."
    lines = [f"Job {outcome.job_id} finished on worker {outcome.worker_id}."]
    for d in outcome.model_dirs:
        lines.append(f"  model:       {d}")
    if outcome.predictions:
        lines.append(f"  predictions: {outcome.predictions}")
    return "\n".join(lines)


def run_train(args: argparse.Namespace):
    return _run_job(args, "train")


def run_track(args: argparse.Namespace):
    return _run_job(args, "track")
