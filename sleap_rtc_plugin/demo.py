"""``sleap-rtc demo``: the whole product on one machine, with nothing to configure.

Starts a coordinator and a CPU worker in this process, generates (or takes) a small
labeled dataset, trains remotely with live progress, fetches the model, predicts
remotely with it, and says where everything landed. Every part is the real one:
the same coordinator, WebRTC link, worker and ``sleap-nn`` a lab would run; only the
addresses are loopback. It composes coordinator, worker and client, so it lives above
all three rather than inside the client.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import tempfile
from pathlib import Path

from .errors import UserError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", metavar="PATH", help="a labeled .slp to use instead of the generated one (frames from its videos are embedded before sending)")
    parser.add_argument("--workdir", metavar="DIR", help="where the project, worker data and results go (default: a new temporary folder)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--frames", type=int, default=24, help="frames in the generated dataset (default 24)")
    parser.add_argument("--model-type", default="single_instance", choices=["single_instance", "top_down", "bottomup"], help="SLEAP model type to train")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a live progress display")


async def run(args: argparse.Namespace) -> int:
    from . import sample_data
    from .coordinator.server import CoordinatorServer
    from .worker.agent import Worker, WorkerOptions
    from .client.api import ConnectionSpec, submit_inference, submit_training
    from .client.cli import follow

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sleap-rtc-demo-")).resolve()
    project = workdir / "project"
    project.mkdir(parents=True, exist_ok=True)
    say = lambda text: print(text, flush=True)  # noqa: E731

    local_files: dict[str, Path] = {}
    if args.labels:
        from .client.build_package import embed_labels, package_stem

        user_labels = Path(args.labels).expanduser().resolve()
        if not user_labels.is_file():
            raise UserError(f"--labels {user_labels} does not exist")
        labels = workdir / "packages" / f"{package_stem(user_labels)}.pkg.slp"
        if embed_labels(user_labels, labels):
            local_files[labels.name] = user_labels
    else:
        say(f"Generating a labeled dataset ({args.frames} frames of moving blobs)…")
        labels = sample_data.make_labels(project / "demo.pkg.slp", n_frames=args.frames, n_nodes=2)
        local_files[labels.name] = labels  # the package carries it under this name

    os.environ.setdefault("SLEAP_RTC_ICE_LOOPBACK", "1")
    async with CoordinatorServer("127.0.0.1", 0, str(workdir / "coordinator.sqlite3")) as server:
        room_id, token, _ = await server.create_room()
        secret = secrets.token_urlsafe(32)
        worker = Worker(WorkerOptions(
            server_url=server.url, room_id=room_id, token=token, room_secret=secret, name="demo-worker",
            data_dir=workdir / "worker", status_port=0, ice_loopback=True,
        ))
        await worker.start()
        try:
            say(f"Started a worker ({worker.capabilities.get('accelerator')}) and a coordinator on this machine; "
                "the client and the worker check that each holds the lab's secret before any data moves.")
            log.info("coordinator %s, worker %s in room %s; mutual PSK auth (HMAC over both DTLS fingerprints)", server.url, worker.name, room_id)
            spec = ConnectionSpec(session_string=worker.session_string(), room_secret=secret, ice_loopback=True)

            package = sample_data.make_training_package(labels, workdir / "packages", model_type=args.model_type, epochs=args.epochs)
            say(f"Training remotely: {package.name}")
            trained = await follow(submit_training(package, spec, project_dir=project, local_files=local_files), plain=args.no_progress)
            if not trained.model_dirs:
                raise UserError("the worker returned no model")

            inference = sample_data.make_inference_package(labels, trained.model_dirs, workdir / "packages")
            say(f"Predicting remotely with {', '.join(d.name for d in trained.model_dirs)}")
            predicted = await follow(submit_inference(inference, spec, project_dir=project, local_files=local_files), plain=args.no_progress)
        finally:
            await worker.stop()

    n_instances = _count_predictions(predicted.predictions)
    say("")
    say("Demo finished: a model was trained on the worker and used to predict poses; both came back to this folder.")
    for d in trained.model_dirs:
        say(f"  model:       {d}")
    say(f"  predictions: {predicted.predictions} ({n_instances} predicted instances)")
    say(f"  everything:  {workdir}")
    return 0


def _count_predictions(path: Path | None) -> int:
    if path is None:
        raise UserError("the worker returned no predictions")
    import sleap_io as sio

    labels = sio.load_slp(str(path))
    return sum(len(lf.predicted_instances) for lf in labels.labeled_frames)
