"""Open, check and unpack a job package into a job directory.

A package comes from a remote client, so every entry name and size is checked
before a byte is written: no absolute paths, drive letters, backslashes, ``..``
or symlinks (zip-slip), a cap on the entry count and on the total unpacked size
(zip bomb), and the declared sizes are enforced while copying, because a zip
header can lie about them. The result is a :class:`JobSpec` saying what to run
and in which order.

Accepted inputs:

* SLEAP 1.6's "Export training job package" zip: ``<stem>.pkg.slp``, one
  ``<head>.yaml`` per model, ``train-script.sh``, ``jobs.yaml``.
* An inference zip made by :func:`sleap_rtc_plugin.sample_data.make_inference_package`
  (or by the client): ``jobs.yaml`` with inference entries and ``models/<run>/``.
* A bare ``.pkg.slp`` plus one or more config yamls (:func:`open_files`).

All functions here block on disk; call them via ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import yaml

from ..protocol.peer import INPUTS_DIR, plain_file_name
from ..jobspec.archive import Limits, check_entry_name, check_zip, extract
from ..jobspec.heads import HEAD_ORDER, head_of
from ..jobspec.refusals import PackageError
from ..jobspec.sleapnn_args import check_device, check_extra_args, check_training_config, safe_run_name


@dataclass
class ModelSpec:
    """One model to train: its config file, head type and planned run name."""

    head: str
    config_path: Path
    run_name: str
    max_epochs: int | None = None


@dataclass
class InferenceSpec:
    """One inference run: data, model folders and the output file name."""

    data_path: Path
    model_paths: list[Path]
    output_name: str
    command: str = "predict"
    device: str | None = None
    extra_args: list[str] = field(default_factory=list)
    only_suggested_frames: bool = False
    video_index: int | None = None
    frames: list[int] = field(default_factory=list)


@dataclass
class JobSpec:
    """What a package asks for, with every path inside ``root``."""

    root: Path
    labels_path: Path | None
    models: list[ModelSpec]
    inference: list[InferenceSpec]

    @property
    def kind(self) -> str:
        """``"train"`` when there are models to train, else ``"track"``."""
        return "train" if self.models else "track"


def _load_yaml(path: Path, what: str) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PackageError(f"cannot read {what} {path.name}: {first}") from None


def _inside(root: Path, rel: Any, what: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise PackageError(f"jobs.yaml: {what} must be a path inside the package, got {rel!r}")
    path = root / check_entry_name(rel)
    if not path.resolve().is_relative_to(root.resolve()):
        raise PackageError(f"jobs.yaml: {what} {rel!r} points outside the package")
    return path


def _model_spec(root: Path, cfg_path: Path, run_name: str | None) -> ModelSpec:
    if not cfg_path.is_file():
        raise PackageError(f"package has no {cfg_path.name} (named in jobs.yaml)")
    config = _load_yaml(cfg_path, "config")
    head = head_of(config, cfg_path.name)
    check_training_config(config, root, cfg_path.name)
    trainer = config.get("trainer_config") or {}
    if not isinstance(trainer, dict):
        raise PackageError(f"config {cfg_path.name}: trainer_config must be a mapping")
    if not run_name:
        run_name = trainer.get("run_name") or head
    epochs = trainer.get("max_epochs")
    return ModelSpec(
        head=head,
        config_path=cfg_path,
        run_name=safe_run_name(run_name, head),
        max_epochs=int(epochs) if isinstance(epochs, int) else None,
    )


def training_order(models: Sequence[ModelSpec]) -> list[ModelSpec]:
    """Stable sort so a centroid model trains before its centered-instance model."""
    return sorted(models, key=lambda m: HEAD_ORDER.get(m.head, 1))


def _find_labels(root: Path) -> Path | None:
    found = sorted(root.glob("*.pkg.slp")) or sorted(root.glob("*.slp"))
    return found[0] if found else None


def parse_job_dir(root: Path) -> JobSpec:
    """Build a :class:`JobSpec` from an unpacked package in ``root``."""
    jobs_path = root / "jobs.yaml"
    models: list[ModelSpec] = []
    inference: list[InferenceSpec] = []
    labels = _find_labels(root)
    if jobs_path.is_file():
        jobs = _load_yaml(jobs_path, "jobs file")
        if not isinstance(jobs, dict):
            raise PackageError("jobs.yaml must be a mapping with 'training' and/or 'inference' lists")
        for i, job in enumerate(jobs.get("training") or []):
            if not isinstance(job, dict) or "cfg" not in job:
                raise PackageError(f"jobs.yaml: training entry {i} has no 'cfg'")
            cfg = _inside(root, job["cfg"], f"training[{i}].cfg")
            run_path = job.get("run_path")
            run_name = PurePosixPath(str(run_path).replace("\\", "/")).name if run_path else None
            spec = _model_spec(root, cfg, run_name)
            train_labels = job.get("train_labels")
            if train_labels:
                labels = _inside(root, train_labels, f"training[{i}].train_labels")
                if not labels.is_file():
                    raise PackageError(f"package has no {train_labels} (the training labels named in jobs.yaml)")
            models.append(spec)
        for i, job in enumerate(jobs.get("inference") or []):
            if not isinstance(job, dict):
                raise PackageError(f"jobs.yaml: inference entry {i} must be a mapping")
            data = _inside(root, job.get("data_path"), f"inference[{i}].data_path")
            model_paths = [_inside(root, m, f"inference[{i}].models") for m in job.get("models") or []]
            if not models:
                if not model_paths:
                    raise PackageError(f"jobs.yaml: inference entry {i} lists no models")
                for m in model_paths:
                    if not (m / "best.ckpt").is_file():
                        raise PackageError(f"package has no trained model at {m.relative_to(root)} (best.ckpt missing)")
            if not data.is_file():
                how = (f"send it beside the package with --input {data.name}" if data.parent.name == INPUTS_DIR else
                       f"put it in the package, or send it beside with --input {data.name} and name it {INPUTS_DIR}/{data.name} in jobs.yaml")
                raise PackageError(f"package has no {data.name} (the data to predict on): {how}")
            command = job.get("command", "predict")
            if command not in ("track", "predict"):
                raise PackageError(f"jobs.yaml: inference[{i}].command must be 'track' or 'predict', got {str(command)[:40]!r}")
            extra = job.get("extra_args") or []
            if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
                raise PackageError(f"jobs.yaml: inference[{i}].extra_args must be a list of strings")
            extra = check_extra_args(extra, command, f"jobs.yaml: inference[{i}].extra_args")
            device = check_device(job.get("device"), f"jobs.yaml: inference[{i}]")
            output = PurePosixPath(str(job.get("output_path") or f"{data.name}.predictions.slp").replace("\\", "/")).name
            if not plain_file_name(output) or output.startswith("."):
                raise PackageError(f"jobs.yaml: inference[{i}].output_path {output[:80]!r} must end in a plain file name")
            video_index = job.get("video_index")
            if video_index is not None and (not isinstance(video_index, int) or isinstance(video_index, bool) or video_index < 0):
                raise PackageError(f"jobs.yaml: inference[{i}].video_index must be a non-negative integer")
            frames = job.get("frames") or []
            if not isinstance(frames, list) or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in frames):
                raise PackageError(f"jobs.yaml: inference[{i}].frames must be a list of non-negative frame numbers")
            inference.append(
                InferenceSpec(
                    data_path=data,
                    model_paths=model_paths,
                    output_name=output,
                    command=command,
                    device=device,
                    extra_args=list(extra),
                    only_suggested_frames=bool(job.get("only_suggested_frames", False)),
                    video_index=video_index,
                    frames=list(frames),
                )
            )
    else:
        for cfg in sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml")):
            config = _load_yaml(cfg, "config")
            if isinstance(config, dict) and "model_config" in config:
                models.append(_model_spec(root, cfg, None))
        if not models:
            raise PackageError("package has no jobs.yaml and no sleap-nn training config (.yaml)")
    if models and labels is None:
        raise PackageError("package has no .pkg.slp labels file")
    if not models and not inference:
        raise PackageError("jobs.yaml lists no training and no inference jobs")
    return JobSpec(root=root, labels_path=labels, models=training_order(models), inference=inference)


def check_input_name(name: Any) -> str:
    """An input travels beside the package (a video, say) and lands at ``inputs/<name>``: one plain file name."""
    if not isinstance(name, str) or not plain_file_name(name):
        raise PackageError(f"input name {name!r} must be a plain file name")
    return name


def place_inputs(job_dir: Path, inputs: dict[str, Path]) -> None:
    """Put the separately sent ``inputs`` at ``job_dir/inputs/<name>`` (hard links to the verified copies)."""
    for name, src in inputs.items():
        dest = job_dir / INPUTS_DIR / check_input_name(name)
        if dest.exists():
            raise PackageError(f"package already holds {INPUTS_DIR}/{name}, which was also sent as an input")
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)


def open_package(path: str | Path, job_dir: str | Path, *, limits: Limits = Limits(), inputs: dict[str, Path] | None = None) -> JobSpec:
    """Validate the zip at ``path``, unpack it into ``job_dir`` and parse it.

    ``inputs`` (name -> verified file) are placed at ``inputs/<name>`` before parsing, so
    ``jobs.yaml`` may name ``inputs/<video>`` as data: a video sent on its own is
    content-addressed on the way, and never travels twice for two jobs.
    ``job_dir`` must be empty or absent. On any error nothing runnable is left:
    the caller can delete ``job_dir``.
    """
    path, job_dir = Path(path), Path(job_dir)
    if path.name.endswith(".slp"):
        raise PackageError(f"{path.name} is a labels file, not a package; train from labels + a config with `sleap-rtc train`")
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise PackageError(f"package {path} does not exist") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"package {path.name} is not a valid zip file ({exc})") from None
    with zf:
        files = check_zip(zf, limits)
        if not files:
            raise PackageError(f"package {path.name} is empty")
        if job_dir.exists() and any(job_dir.iterdir()):
            raise PackageError(f"job dir {job_dir} is not empty")
        try:
            extract(zf, files, job_dir, limits)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
            raise PackageError(f"package {path.name} is corrupt: {exc}") from None
    place_inputs(job_dir, inputs or {})
    return parse_job_dir(job_dir)


def open_files(labels: str | Path, configs: Sequence[str | Path], job_dir: str | Path) -> JobSpec:
    """Build a training job from a bare ``.pkg.slp`` and its config yaml(s).

    The files are copied into ``job_dir`` so the job owns everything it reads,
    and each config's ``train_labels_path`` is pointed at the copied labels.
    """
    labels, job_dir = Path(labels), Path(job_dir)
    if not labels.is_file():
        raise PackageError(f"labels file {labels} does not exist")
    if not labels.name.endswith(".slp"):
        raise PackageError(f"{labels.name} is not a .slp labels file")
    if not configs:
        raise PackageError("no config yaml given; a training job needs at least one")
    job_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(labels, job_dir / labels.name)
    models = []
    for cfg in map(Path, configs):
        if not cfg.is_file():
            raise PackageError(f"config {cfg} does not exist")
        config = _load_yaml(cfg, "config")
        head_of(config, cfg.name)
        config.setdefault("data_config", {})["train_labels_path"] = [labels.name]
        target = job_dir / cfg.name
        with open(target, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        models.append(_model_spec(job_dir, target, None))
    return JobSpec(root=job_dir, labels_path=job_dir / labels.name, models=training_order(models), inference=[])
