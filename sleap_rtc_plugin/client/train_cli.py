"""``sleap-rtc train``: ``sleap-nn train`` on a remote worker.

Takes what the installed ``sleap-nn train`` takes (a config YAML by ``--config``, as the
first word, or by the legacy ``--config-name/--config-dir``; Hydra overrides; labels from
``data_config.train_labels_path``/``val_labels_path``), builds the package itself and
puts the trained model where ``sleap-nn train`` would have: ``<ckpt_dir>/<run_name>``
when the config sets ``trainer_config.ckpt_dir``, else ``models/`` beside the labels
(SLEAP's project layout).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from ..errors import UserError
from .headless import add_where_arguments, need_sleap_io, move_models, where_to_run

DESCRIPTION_EPILOG = """\
examples:
  sleap-rtc train --config centroid.yaml --session-string S
  sleap-rtc train centroid.yaml trainer_config.max_epochs=50 data_config.train_labels_path=[labels.slp] --session-string S
  sleap-rtc train --config-name centroid --config-dir configs +trainer_config.seed=1 --queue --room-id R --token T

Labels that reference video files have their labeled frames embedded before sending; the
model lands in trainer_config.ckpt_dir/run_name (relative to this folder, as with
sleap-nn), or in models/ next to the labels when the config sets no ckpt_dir.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = DESCRIPTION_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    what = parser.add_argument_group("what to train (as sleap-nn train takes it)")
    what.add_argument("words", nargs="*", metavar="[CONFIG.yaml] OVERRIDE",
                      help="the config YAML (or use --config) and Hydra overrides: key=value for keys in the YAML, "
                           "+key=value to add one, ++key=value for either, ~key to remove one")
    what.add_argument("--config", dest="nn_config", metavar="PATH", help="sleap-nn training config YAML")
    what.add_argument("--config-name", metavar="NAME", help="legacy form: config file name (with or without .yaml) in --config-dir")
    what.add_argument("--config-dir", metavar="DIR", help="legacy form: folder holding --config-name (default: this folder)")
    what.add_argument("--train-labels", metavar="SLP", help="training labels (default: data_config.train_labels_path)")
    what.add_argument("--val-labels", metavar="SLP", help="validation labels (default: data_config.val_labels_path; "
                                                          "else data_config.validation_fraction splits the training labels)")
    zmq = parser.add_argument_group("SLEAP loss viewer")
    zmq.add_argument("--publish-port", type=int, metavar="PORT", help="republish training events to a SLEAP LossViewer bound on this port")
    zmq.add_argument("--controller-port", type=int, metavar="PORT", help="receive Stop Early from a SLEAP LossViewer bound on this port")
    add_where_arguments(parser)


def local_ckpt_dir(config: dict, labels: Path) -> Path:
    """Where ``sleap-nn train`` would write: ``ckpt_dir`` from the working folder, else ``models/`` by the labels."""
    ckpt = (config.get("trainer_config") or {}).get("ckpt_dir")
    if ckpt in (None, "", "None", "."):
        return labels.parent / "models"
    return Path(str(ckpt)).expanduser().resolve()


async def run(args: argparse.Namespace) -> int:
    from .api import submit_training
    from .build_package import build_training_package, head_of_config
    from .cli import follow
    from .nn_config import config_path, labels_paths, load_config

    need_sleap_io("train")
    words = list(args.words)
    config_arg = args.nn_config
    if words and not config_arg and not args.config_name and "=" not in words[0] and not words[0].startswith(("+", "~")):
        config_arg = words.pop(0)
    path = config_path(config_arg, args.config_name, args.config_dir)
    config = await asyncio.to_thread(load_config, path, words)
    head = head_of_config(config, path.name)
    train = [Path(args.train_labels).expanduser().resolve()] if args.train_labels else labels_paths(config, "train_labels_path", path)
    if not train:
        raise UserError(f"no training labels: set data_config.train_labels_path in {path.name}, "
                        "or pass --train-labels labels.slp (or the override data_config.train_labels_path=[labels.slp])")
    if len(train) > 1:
        raise UserError("data_config.train_labels_path lists several files; sleap-rtc train sends one: merge them in SLEAP first")
    labels = train[0]
    if not labels.is_file():
        raise UserError(f"training labels {labels} do not exist")
    val = [Path(args.val_labels).expanduser().resolve()] if args.val_labels else labels_paths(config, "val_labels_path", path)
    test = labels_paths(config, "test_file_path", path)
    if len(val) > 1 or len(test) > 1:
        raise UserError("data_config.val_labels_path/test_file_path list several files; sleap-rtc train sends one of each")
    ckpt_dir = local_ckpt_dir(config, labels)
    spec, queue = await where_to_run(args)
    with tempfile.TemporaryDirectory(prefix="sleap-rtc-train-") as tmp:
        print(f"Packaging {labels.name} with {path.name} ({head} model)…", flush=True)
        built = await asyncio.to_thread(build_training_package, config, labels=labels, out_dir=Path(tmp),
                                        val_labels=val[0] if val else None, test_labels=test[0] if test else None)
        print(f"Training {built.run_names[0]} remotely.", flush=True)
        handle = submit_training(built.path, spec, project_dir=labels.parent, publish_port=args.publish_port,
                                 controller_port=args.controller_port, queue=queue, local_files=built.local_files)
        outcome = await follow(handle, plain=args.no_progress)
    if outcome.detached:
        print(f"Job {outcome.job_id} keeps running; fetch the model later with: sleap-rtc client-train --attach {outcome.job_id} "
              f"--project-dir {labels.parent}")
        return 0
    if not outcome.model_dirs:
        raise UserError(f"job {outcome.job_id} finished but returned no model")
    placed = await asyncio.to_thread(move_models, outcome.model_dirs, ckpt_dir)
    for run_dir in placed:
        print(f"Model saved to {run_dir}")
    return 0
