"""``sleap-rtc track`` / ``sleap-rtc predict``: ``sleap-nn track``/``predict`` on a remote worker.

Takes the installed sleap-nn's flags for what to predict (``--data_path``, repeatable
``--model_paths``, ``--frames``, ``--video_index``, ``-o``, ``--device`` and the tuning
and tracking flags a worker accepts -- :mod:`..jobspec.sleapnn_args` is the one list),
packages the models, sends the video beside them (the worker caches it by content) and
writes the predictions where sleap-nn would, pointing at the user's own video.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..jobspec.refusals import PackageError
from ..jobspec.sleapnn_args import COMMON_FLAGS, PREDICT_FLAGS, check_extra_args
from .headless import add_where_arguments, need_sleap_io, move_predictions, where_to_run

#: Flags with a place of their own in jobs.yaml or on this parser.
_OWN = {"--frames", "--video_index"}


def _dest(flag: str) -> str:
    return "nn_" + flag.lstrip("-").replace("-", "_")


def _tuning_flags(command: str) -> dict[str, Any]:
    flags = {**COMMON_FLAGS, **(PREDICT_FLAGS if command == "predict" else {})}
    return {f: kind for f, kind in flags.items() if f not in _OWN}


def _add(parser: argparse.ArgumentParser, command: str) -> None:
    parser.usage = (f"sleap-rtc {command} -i DATA -m MODEL [-m MODEL] [-o OUT] [--frames LIST] [--video_index N] [-d DEV]\n"
                    f"       [sleap-nn {command} options] (--session-string S | --room-id ID --token T [--worker-id W] | --queue ...)")
    what = parser.add_argument_group(f"what to predict (as sleap-nn {command} takes it)")
    what.add_argument("-i", "--data_path", "--data-path", dest="data_path", required=True, metavar="PATH",
                      help="a video, or a .slp labels file (its labeled frames are embedded and sent)")
    what.add_argument("-m", "--model_paths", "--model-paths", dest="model_paths", action="append", required=True, metavar="DIR",
                      help="a trained model folder (or its best.ckpt); repeat for a top-down pair")
    what.add_argument("-o", "--output_path", "--output-path", dest="output_path", metavar="SLP",
                      help="where the predictions go (default: where sleap-nn %s puts them: %s)"
                           % (command, "<data_path>.slp" if command == "predict" else "<data_path without extension>.predictions.slp"))
    what.add_argument("--frames", metavar="LIST", help="frames to predict: numbers and ranges, e.g. 0-99 or 1,5,10-20 (default: all)")
    what.add_argument("--video_index", "--video-index", dest="video_index", type=int, metavar="N",
                      help="with a .slp --data_path: predict on its video N (the video file itself is sent)")
    what.add_argument("-d", "--device", metavar="DEV", help="cpu, cuda, cuda:N, mps or auto (default: the worker's choice)")
    flags = _tuning_flags(command)
    tuning = parser.add_argument_group(
        "sleap-nn tuning and tracking options",
        "Passed to sleap-nn as given (see `sleap-nn %s --help`); only these, which name no file, travel: %s"
        % (command, " ".join(sorted(f for f in flags if f.startswith("--")))),
    )
    for flag, kind in flags.items():
        if kind == "switch":
            tuning.add_argument(flag, dest=_dest(flag), action="store_true", help=argparse.SUPPRESS)
        else:
            typ = int if kind == "int" else float if kind == "float" else str
            tuning.add_argument(flag, dest=_dest(flag), type=typ, metavar="V", help=argparse.SUPPRESS)
    add_where_arguments(parser)


def add_track_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "track")


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "predict")


def extra_args(args: argparse.Namespace, command: str) -> list[str]:
    """The tuning flags given, as sleap-nn arguments, checked as the worker will check them."""
    out: list[str] = []
    for flag, kind in _tuning_flags(command).items():
        value = getattr(args, _dest(flag), None)
        if value is None or value is False:
            continue
        out += [flag] if kind == "switch" else [flag, str(value)]
    try:
        return check_extra_args(out, command, "option")
    except PackageError as exc:
        raise UserError(str(exc)) from None


def default_output(data: Path, command: str, video_index: int | None) -> Path:
    """Where the installed sleap-nn writes predictions when ``-o`` is not given."""
    if command == "predict":
        return Path(f"{data}.slp")
    if video_index is not None and data.suffix == ".slp":
        import sleap_io as sio

        videos = sio.load_slp(data.as_posix(), open_videos=False).videos
        name = Path(str(videos[video_index].filename)).stem if 0 <= video_index < len(videos) else f"video_{video_index}"
        return data.parent / f"{data.stem}.{name}.predictions.slp"
    return data.with_suffix(".predictions.slp")


async def _run(args: argparse.Namespace, command: str) -> int:
    from .api import submit_inference
    from .build_package import build_inference_package, check_frames
    from .cli import follow

    need_sleap_io(command)
    data = Path(args.data_path).expanduser().resolve()
    if not data.is_file():
        raise UserError(f"--data_path {args.data_path}: no such file")
    models = [Path(m).expanduser().resolve() for m in args.model_paths]
    for m in models:
        if not m.exists():
            raise UserError(f"--model_paths {m}: no such folder")
        if not ((m.parent if m.is_file() else m) / "best.ckpt").is_file():
            raise UserError(f"--model_paths {m}: no best.ckpt there; give a trained model folder")
    frames = check_frames(args.frames)
    extra = extra_args(args, command)
    if args.device:
        from ..jobspec.sleapnn_args import check_device

        try:
            check_device(args.device, "--device")
        except PackageError as exc:
            raise UserError(str(exc)) from None
    output = Path(args.output_path).expanduser().resolve() if args.output_path else default_output(data, command, args.video_index)
    spec, queue = await where_to_run(args)
    with tempfile.TemporaryDirectory(prefix="sleap-rtc-track-") as tmp:
        built = await asyncio.to_thread(build_inference_package, data, models, Path(tmp), command=command, video_index=args.video_index,
                                        frames=frames, device=args.device, extra_args=extra)
        sent = ", ".join(built.inputs) or data.name
        print(f"Predicting on {sent} remotely with {', '.join(m.name for m in models)}.", flush=True)
        handle = submit_inference(built.path, spec, project_dir=output.parent, queue=queue, inputs=built.inputs, local_files=built.local_files)
        outcome = await follow(handle, plain=args.no_progress)
    if outcome.detached:
        print(f"Job {outcome.job_id} keeps running; fetch the predictions later with: sleap-rtc client-track --attach {outcome.job_id} "
              f"--project-dir {output.parent}")
        return 0
    if outcome.predictions is None:
        raise UserError(f"job {outcome.job_id} finished but returned no predictions")
    placed = await asyncio.to_thread(move_predictions, outcome.predictions, output)
    print(f"Predictions saved to {placed}")
    return 0


def run_track(args: argparse.Namespace):
    return _run(args, "track")


def run_predict(args: argparse.Namespace):
    return _run(args, "predict")
