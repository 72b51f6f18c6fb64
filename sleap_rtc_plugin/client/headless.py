"""What ``sleap-rtc train`` and ``sleap-rtc track`` share: where to run, and placing results.

Both commands speak sleap-nn's language for *what* to run and the rest of ``sleap-rtc``'s
for *where* (a session string, a room with worker selection, or the coordinator's
queue), so a cluster user's ``sleap-nn train …`` line becomes ``sleap-rtc train …
--session-string S`` and nothing else changes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ..errors import UserError
from ..util.labels_arg import parse_labels
from .api import ConnectionSpec, QueueOptions, RemoteError
from .cli import _add_connection_arguments, _pick_interactively, spec_from_args


def need_sleap_io(command: str) -> None:
    """One line, not an ImportError, on a client installed without sleap-io."""
    try:
        import sleap_io  # noqa: F401
    except ImportError:
        raise UserError(f"sleap-rtc {command} reads and packages SLEAP labels with sleap-io: pip install 'sleap-rtc-plugin[client]'") from None


def add_where_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a live progress display")
    _add_connection_arguments(parser)


async def where_to_run(args: argparse.Namespace) -> tuple[ConnectionSpec, QueueOptions | None]:
    """The worker (or queue) the flags name; asks on a terminal when several could do."""
    try:
        spec = spec_from_args(args)
    except RemoteError as exc:
        raise UserError(str(exc)) from None
    if args.queue:
        return spec, QueueOptions(min_gpu_memory_mb=args.min_gpu_memory or 0, gpu_count=args.gpus, labels=parse_labels(args.label),
                                  worker_id=args.worker_id, priority=args.priority, max_retries=args.max_retries)
    if not (spec.worker_id or spec.auto_select):
        if sys.stdin.isatty():
            spec = await _pick_interactively(spec)
        else:
            spec.auto_select = True
    return spec, None


def free_name(parent: Path, name: str) -> Path:
    """``parent/name``, or with sleap-nn's ``-1``, ``-2``… suffix when that is taken."""
    target, n = parent / name, 0
    while target.exists():
        n += 1
        target = parent / f"{name}-{n}"
    return target


def move_models(model_dirs: list[Path], ckpt_dir: Path) -> list[Path]:
    """Move installed run dirs into ``ckpt_dir`` (where sleap-nn would have written them)."""
    placed = []
    for run_dir in model_dirs:
        if run_dir.parent.resolve() == ckpt_dir.resolve():
            placed.append(run_dir)
            continue
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        target = free_name(ckpt_dir, run_dir.name)
        shutil.move(str(run_dir), target)
        placed.append(target)
        try:
            run_dir.parent.rmdir()  # the project's models/ folder, when this run was all it held
        except OSError:
            pass
    return placed


def move_predictions(received: Path, output: Path) -> Path:
    """Put the predictions at ``output``, replacing a file there as sleap-nn does."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if received.resolve() != output.resolve():
        shutil.move(str(received), output)
        try:
            received.parent.rmdir()
        except OSError:
            pass
    return output
