"""Build job packages from what a sleap-nn user has: labels + a config, or models + a video.

The layout is SLEAP's "Export training job package" (docs/user-guide.md, "Package
layout"): ``<stem>.pkg.slp`` with the labeled frames embedded, one ``<head>.yaml``,
``train-script.sh`` and ``jobs.yaml``. Frames are embedded with sleap-io when the labels
reference external videos, because the worker has no copy of them; labels whose frames
are embedded already travel as they are. An inference package holds the models and a
``jobs.yaml``; a video travels beside it (``inputs/<name>``), content-addressed, so the
worker's cache makes a second job on the same video move no video bytes.

Everything here blocks on disk: call it via ``asyncio.to_thread``.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import UserError
from ..protocol.peer import INPUTS_DIR
from ..jobspec.refusals import PackageError
from ..jobspec.sleapnn_args import safe_run_name

#: Files of a trained model folder that inference needs; the rest stays home.
MODEL_FILES = ("best.ckpt", "training_config.yaml", "initial_config.yaml", "training_config.json")
#: Config keys naming a file the package must carry (copied under ``weights/``).
WEIGHT_KEYS = (("trainer_config", "resume_ckpt_path"), ("model_config", "pretrained_backbone_weights"),
               ("model_config", "pretrained_head_weights"))
FRAMES = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*")


@dataclass
class BuiltPackage:
    """A package zip, the files sent beside it, and which package names stand for the user's files."""

    path: Path
    inputs: dict[str, Path] = field(default_factory=dict)
    local_files: dict[str, Path] = field(default_factory=dict)
    run_names: list[str] = field(default_factory=list)
    output_name: str = ""


def package_stem(labels: Path) -> str:
    return labels.name.removesuffix(".slp").removesuffix(".pkg")


def _is_embedded(video: Any) -> bool:
    return bool((getattr(video, "backend_metadata", None) or {}).get("has_embedded_images"))


def embed_labels(src: Path, dest: Path, *, embed: str = "user") -> bool:
    """Write ``dest``: ``src`` with its ``embed`` frames' images inside. True when ``src`` was
    self-contained already and was copied unchanged (then ``dest`` stands for ``src``).

    Refuses up front, in one line, labels whose videos are not on this machine or that
    hold no frames to embed: the worker could do nothing with them.
    """
    import sleap_io as sio

    try:
        labels = sio.load_slp(src.as_posix(), open_videos=False)
    except Exception as exc:
        raise UserError(f"cannot read labels {src}: {exc}") from None
    frames = labels.user_labeled_frames if embed == "user" else labels.labeled_frames
    if not frames:
        raise UserError(f"{src.name} has no {'user-labeled ' if embed == 'user' else 'labeled '}frames")
    used = {id(lf.video) for lf in frames}
    external = [v for v in labels.videos if id(v) in used and not _is_embedded(v)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not external:
        shutil.copyfile(src, dest)
        return True
    for v in external:
        if not Path(str(v.filename)).exists():
            raise UserError(f"{src.name} references video {v.filename}, which is not on this machine; fix the path "
                            "(SLEAP: File > Replace videos) or pass labels with embedded frames")
    labels = sio.load_slp(src.as_posix())
    try:
        sio.save_slp(labels, dest.as_posix(), embed=embed, embed_inplace=False, verbose=False)
    finally:
        for v in labels.videos:
            v.close()
    return False


def _zip(root: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(root).as_posix())
    return out


def head_of_config(config: Any, name: str) -> str:
    from ..jobspec.heads import head_of

    try:
        return head_of(config, name)
    except PackageError as exc:
        raise UserError(str(exc)) from None


def _copy_weights(config: dict, root: Path) -> None:
    for section, key in WEIGHT_KEYS:
        sub = config.get(section) or {}
        value = sub.get(key) if isinstance(sub, dict) else None
        if not value:
            continue
        path = Path(str(value)).expanduser()
        if not path.is_file():
            raise UserError(f"{section}.{key}: {value} does not exist")
        target = root / "weights" / f"{key}-{path.name}"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, target)
        sub[key] = target.relative_to(root).as_posix()


def build_training_package(config: dict, *, labels: Path, out_dir: Path, val_labels: Path | None = None,
                           test_labels: Path | None = None) -> BuiltPackage:
    """One model's training package from a (resolved) sleap-nn config and its labels."""
    head = head_of_config(config, "config")
    stem = package_stem(labels)
    root = out_dir / "package"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    local: dict[str, Path] = {}
    pkg_name = f"{stem}.pkg.slp"
    if embed_labels(labels, root / pkg_name):
        local[pkg_name] = labels
    data = config.setdefault("data_config", {})
    data["train_labels_path"] = [pkg_name]
    for key, extra, suffix in (("val_labels_path", val_labels, "val"), ("test_file_path", test_labels, "test")):
        if extra is None:
            data[key] = None  # a local path would mean nothing on the worker
            continue
        name = f"{stem}.{suffix}.pkg.slp"
        if embed_labels(extra, root / name):
            local[name] = extra
        data[key] = [name] if key == "val_labels_path" else name
    if data.get("cache_img_path"):
        data["cache_img_path"] = None  # the worker's disk, the worker's choice
    _copy_weights(config, root)
    trainer = config.setdefault("trainer_config", {})
    n = _count_frames(root / pkg_name)
    run_name = safe_run_name(trainer.get("run_name") or f"{datetime.now():%y%m%d_%H%M%S}.{head}.n={n}", head)
    trainer["run_name"], trainer["ckpt_dir"] = run_name, "models"
    (root / f"{head}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "train-script.sh").write_text(
        f"#!/bin/bash\nsleap-nn train --config-name {head} --config-dir . trainer_config.ckpt_dir=models trainer_config.run_name={run_name}\n")
    jobs = {"training": [{"cfg": f"{head}.yaml", "run_path": f"models/{run_name}", "train_labels": pkg_name}], "inference": []}
    (root / "jobs.yaml").write_text(yaml.safe_dump(jobs, sort_keys=False))
    path = _zip(root, out_dir / f"{labels.name}.training_job.zip")
    shutil.rmtree(root, ignore_errors=True)
    return BuiltPackage(path, local_files=local, run_names=[run_name])


def _count_frames(path: Path) -> int:
    import sleap_io as sio

    return len(sio.load_slp(path.as_posix(), open_videos=False).user_labeled_frames)


def check_frames(frames: str | None) -> str | None:
    if frames is None:
        return None
    text = frames.replace(" ", "")
    if not FRAMES.fullmatch(text):
        raise UserError(f"--frames {frames!r}: give frame numbers and ranges like 0-99 or 1,5,10-20")
    return text


def build_inference_package(data: Path, model_dirs: Sequence[Path], out_dir: Path, *, command: str = "track",
                            video_index: int | None = None, frames: str | None = None, device: str | None = None,
                            extra_args: Sequence[str] = ()) -> BuiltPackage:
    """Models + ``jobs.yaml``; a video is sent beside the package, labels are embedded into it."""
    root = out_dir / "package"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    built = BuiltPackage(Path())
    names: list[str] = []
    for model in model_dirs:
        model = model.parent if model.is_file() else model
        if not (model / "best.ckpt").is_file():
            raise UserError(f"--model_paths {model}: no best.ckpt there; give a trained model folder")
        name, n = model.name, 1
        while name in names:
            n += 1
            name = f"{model.name}-{n}"
        for f in MODEL_FILES:
            if (model / f).is_file():
                (root / "models" / name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(model / f, root / "models" / name / f)
        names.append(name)
    entry: dict[str, Any] = {"models": [f"models/{n}" for n in names], "command": command}
    if data.suffix == ".slp" and video_index is not None:
        data = _video_of(data, video_index)
        video_index = None if data.suffix != ".slp" else video_index
    if data.suffix != ".slp":
        built.inputs[data.name] = data
        built.local_files[data.name] = data
        entry["data_path"] = f"{INPUTS_DIR}/{data.name}"
    else:
        pkg_name = f"{package_stem(data)}.pkg.slp"
        if embed_labels(data, root / pkg_name, embed="all"):
            built.local_files[pkg_name] = data
        entry["data_path"] = pkg_name
    if video_index is not None:
        entry["video_index"] = video_index
    built.output_name = f"{data.name}.predictions.slp"
    entry["output_path"] = built.output_name
    if device:
        entry["device"] = device
    extra = list(extra_args)
    if frames:
        extra += ["--frames", frames]
    entry["extra_args"] = extra
    (root / "jobs.yaml").write_text(yaml.safe_dump({"training": [], "inference": [entry]}, sort_keys=False))
    built.path = _zip(root, out_dir / f"{data.name}.inference_job.zip")
    shutil.rmtree(root, ignore_errors=True)
    return built


def _video_of(labels_path: Path, index: int) -> Path:
    """The file of video ``index`` in a labels file: an external video is sent itself."""
    import sleap_io as sio

    labels = sio.load_slp(labels_path.as_posix(), open_videos=False)
    if not 0 <= index < len(labels.videos):
        raise UserError(f"--video_index {index}: {labels_path.name} has {len(labels.videos)} video(s), numbered from 0")
    video = labels.videos[index]
    if _is_embedded(video):
        return labels_path
    path = Path(str(video.filename))
    if not path.is_file():
        raise UserError(f"video {index} of {labels_path.name} is {path}, which is not on this machine; pass the video itself as --data_path")
    return path
