"""A tiny synthetic SLEAP dataset and job packages built from it.

Tests and ``sleap-rtc demo`` need real labels and real training packages without
shipping a video or downloading anything. The frames are bright Gaussian blobs
moving on a circle, one blob per skeleton node, so even a 2-epoch UNet learns
something predictable. Images are embedded in the ``.pkg.slp`` (as SLEAP's
"Export training job package" does), so a receiving worker needs no video file.

The package layout mirrors SLEAP 1.6's ``LearningDialog.export_package`` /
``runners.write_pipeline_files``: ``<stem>.pkg.slp``, one ``<head>.yaml`` per
model, ``train-script.sh``, ``inference-script.sh`` and ``jobs.yaml`` with
``training`` entries ``{cfg, run_path, train_labels}`` and ``inference``
entries ``{data_path, models, output_path, type, only_suggested_frames,
tracking}``.
"""

from __future__ import annotations

import shlex
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

#: Heads trained for each SLEAP "model type", in the order they must train.
MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "single_instance": ("single_instance",),
    "top_down": ("centroid", "centered_instance"),
    "bottomup": ("bottomup",),
}

_NODE_INTENSITY = (220.0, 150.0, 100.0, 180.0)


def _blob_frames(
    n_frames: int, size: tuple[int, int], n_nodes: int, n_instances: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Render frames and return ``(frames[N,H,W,1] uint8, points[N,I,K,2])``."""
    height, width = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.zeros((n_frames, height, width, 1), np.uint8)
    points = np.zeros((n_frames, n_instances, n_nodes, 2), np.float64)
    radius = min(height, width) / 5
    half_len = min(height, width) / 8
    phases = rng.uniform(0, 2 * np.pi, size=n_instances)
    for i in range(n_frames):
        img = np.zeros((height, width))
        for j in range(n_instances):
            t = 2 * np.pi * i / n_frames + phases[j]
            cx = width / 2 + radius * np.cos(t) * (1 if j % 2 == 0 else -0.6)
            cy = height / 2 + radius * np.sin(t) * (1 if j % 2 == 0 else -0.6)
            angle = t * 0.5
            for k in range(n_nodes):
                offset = (k - (n_nodes - 1) / 2) * 2 * half_len / max(n_nodes - 1, 1)
                x = cx + offset * np.cos(angle)
                y = cy + offset * np.sin(angle)
                points[i, j, k] = (x, y)
                amp = _NODE_INTENSITY[k % len(_NODE_INTENSITY)]
                img += amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
        img += rng.normal(0, 4, size=img.shape)
        frames[i, ..., 0] = np.clip(img, 0, 255).astype(np.uint8)
    return frames, points


def make_labels(
    path: str | Path,
    *,
    n_frames: int = 20,
    size: tuple[int, int] = (64, 64),
    n_nodes: int = 2,
    n_instances: int = 1,
    seed: int = 0,
) -> Path:
    """Write a labeled ``.pkg.slp`` with embedded frames and return its path.

    Every frame has ``n_instances`` user-labeled instances whose nodes sit on the
    blob centers. The frames go through a temporary HDF5 video only so sleap-io
    can embed them; nothing outside ``path`` is left behind.
    """
    import h5py
    import sleap_io as sio

    if n_nodes < 1 or n_frames < 2 or n_instances < 1:
        raise ValueError("make_labels needs n_nodes >= 1, n_frames >= 2, n_instances >= 1")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames, points = _blob_frames(n_frames, size, n_nodes, n_instances, seed)
    names = [f"node{k}" for k in range(n_nodes)]
    edges = [(names[k], names[k + 1]) for k in range(n_nodes - 1)]
    skeleton = sio.Skeleton(names, edges=edges, name="blobs")
    with tempfile.TemporaryDirectory(prefix="sleap-rtc-sample-") as tmp:
        raw = Path(tmp) / "frames.h5"
        with h5py.File(raw, "w") as f:
            f.create_dataset("video", data=frames)
        video = sio.Video.from_filename(raw.as_posix(), dataset="video")
        labeled = [
            sio.LabeledFrame(
                video=video,
                frame_idx=i,
                instances=[
                    sio.Instance.from_numpy(points[i, j], skeleton=skeleton)
                    for j in range(n_instances)
                ],
            )
            for i in range(n_frames)
        ]
        labels = sio.Labels(labeled, videos=[video], skeletons=[skeleton])
        labels.save(path.as_posix(), embed=True, verbose=False)
        video.close()
    return path


def make_video_labels(folder: str | Path, *, n_frames: int = 24, labeled: int = 16, name: str = "robot") -> tuple[Path, Path]:
    """Write ``folder/<name>.mp4`` and ``folder/labels.slp`` on it (not embedded), as most users have labels.

    ``labeled`` user-labeled frames of the blob animal; returns (labels, video)."""
    import imageio.v3 as iio
    import sleap_io as sio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames, points = _blob_frames(n_frames, (64, 64), 2, 1, seed=0)
    video_path = folder / f"{name}.mp4"
    iio.imwrite(video_path, np.repeat(frames, 3, axis=-1), fps=10, codec="libx264", plugin="pyav")
    skeleton = sio.Skeleton(["node0", "node1"], edges=[("node0", "node1")], name="blobs")
    video = sio.Video.from_filename(video_path.as_posix())
    lfs = [sio.LabeledFrame(video=video, frame_idx=i, instances=[sio.Instance.from_numpy(points[i, 0], skeleton=skeleton)])
           for i in range(labeled)]
    labels_path = folder / "labels.slp"
    sio.Labels(lfs, videos=[video], skeletons=[skeleton]).save(labels_path.as_posix(), embed=False, verbose=False)
    video.close()
    return labels_path, video_path


def _head_config(head: str, node_names: Sequence[str], anchor: str) -> dict:
    if head == "single_instance":
        return {"confmaps": {"part_names": list(node_names), "sigma": 2.5, "output_stride": 2}}
    if head == "centroid":
        return {"confmaps": {"anchor_part": anchor, "sigma": 2.5, "output_stride": 2}}
    if head == "centered_instance":
        return {
            "confmaps": {
                "part_names": list(node_names),
                "anchor_part": anchor,
                "sigma": 2.5,
                "output_stride": 2,
            }
        }
    if head == "bottomup":
        edges = [[node_names[k], node_names[k + 1]] for k in range(len(node_names) - 1)]
        return {
            "confmaps": {"part_names": list(node_names), "sigma": 2.5, "output_stride": 2},
            "pafs": {"edges": edges, "sigma": 5.0, "output_stride": 4},
        }
    raise ValueError(f"unknown head {head!r}; expected one of {sorted(_ALL_HEADS)}")


_ALL_HEADS = {"single_instance", "centroid", "centered_instance", "bottomup"}


def training_config(
    head: str,
    *,
    labels_name: str,
    node_names: Sequence[str],
    epochs: int = 2,
    steps_per_epoch: int = 10,
    accelerator: str = "cpu",
    run_name: str | None = None,
    ckpt_dir: str = "models",
) -> dict:
    """A sleap-nn 0.3 training config for ``head`` tuned to finish fast on a CPU.

    A 4-level-deep 8-filter UNet (max stride 8, output stride 2), no augmentation,
    no early stopping (so a run stops only at ``epochs`` or on Stop Early), a high
    learning rate so two epochs already give usable peaks, and ``num_workers: 0``
    because data loader worker processes cost more than they save at this size.
    """
    anchor = node_names[0]
    data: dict[str, Any] = {
        "train_labels_path": [labels_name],
        "validation_fraction": 0.2,
        "use_augmentations_train": False,
        "preprocessing": {"scale": 1.0},
    }
    if head == "centered_instance":
        data["preprocessing"]["crop_size"] = 32
    return {
        "data_config": data,
        "model_config": {
            "backbone_config": {
                "unet": {
                    "in_channels": 1,
                    "filters": 8,
                    "filters_rate": 1.5,
                    "max_stride": 8,
                    "output_stride": 2,
                    # sleap-nn 0.3.5 fails to build a UNet with convs_per_block: 1.
                    "convs_per_block": 2,
                }
            },
            "head_configs": {head: _head_config(head, node_names, anchor)},
        },
        "trainer_config": {
            "train_data_loader": {"batch_size": 4, "num_workers": 0},
            "val_data_loader": {"batch_size": 4, "num_workers": 0},
            "trainer_accelerator": accelerator,
            "trainer_devices": 1,
            "enable_progress_bar": False,
            "min_train_steps_per_epoch": steps_per_epoch,
            "max_epochs": epochs,
            "save_ckpt": True,
            "ckpt_dir": ckpt_dir,
            "run_name": run_name,
            "model_ckpt": {"save_top_k": 1, "save_last": False},
            "optimizer": {"lr": 0.005},
            "early_stopping": {"stop_training_on_plateau": False},
            "visualize_preds_during_training": False,
        },
    }


def _describe(labels_path: Path) -> tuple[list[str], int]:
    """Node names of the first skeleton and the number of labeled frames."""
    import sleap_io as sio

    labels = sio.load_slp(labels_path.as_posix(), open_videos=False)
    return [node.name for node in labels.skeletons[0].nodes], len(labels.labeled_frames)


def _write_zip(out_path: Path, files: Iterable[tuple[str, Path | bytes]]) -> Path:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, src in files:
            if isinstance(src, bytes):
                zf.writestr(arcname, src)
            else:
                zf.write(src, arcname)
    return out_path


def make_training_package(
    labels_path: str | Path,
    out_dir: str | Path,
    *,
    model_type: str = "single_instance",
    epochs: int = 2,
    steps_per_epoch: int = 10,
    accelerator: str = "cpu",
) -> Path:
    """Write ``<stem>.slp.training_job.zip`` as SLEAP 1.6 exports it; return its path.

    ``model_type`` is ``single_instance``, ``top_down`` (centroid, then centered
    instance) or ``bottomup``.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}; expected one of {sorted(MODEL_TYPES)}")
    labels_path = Path(labels_path)
    stem = labels_path.name.removesuffix(".slp").removesuffix(".pkg")
    pkg_name = f"{stem}.pkg.slp"
    nodes, n_labeled = _describe(labels_path)
    timestamp = datetime.now().strftime("%y%m%d_%H%M%S")
    files: list[tuple[str, Path | bytes]] = [(pkg_name, labels_path)]
    script = "#!/bin/bash\n"
    jobs: list[dict] = []
    for head in MODEL_TYPES[model_type]:
        run_name = f"{timestamp}.{head}.n={n_labeled}"
        cfg = training_config(
            head,
            labels_name=pkg_name,
            node_names=nodes,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            accelerator=accelerator,
            run_name=run_name,
        )
        cfg_name = f"{head}.yaml"
        files.append((cfg_name, yaml.safe_dump(cfg, sort_keys=False).encode()))
        ckpt_override = shlex.quote('trainer_config.ckpt_dir="models"')
        run_override = shlex.quote('trainer_config.run_name="' + run_name + '"')
        script += (
            f"sleap train --config-name {cfg_name} --config-dir . "
            f"{ckpt_override} {run_override} \n"
        )
        jobs.append({"cfg": cfg_name, "run_path": f"models/{run_name}", "train_labels": pkg_name})
    files.append(("train-script.sh", script.encode()))
    files.append(("inference-script.sh", b"#!/bin/bash\n"))
    files.append(("jobs.yaml", yaml.safe_dump({"training": jobs, "inference": []}).encode()))
    return _write_zip(Path(out_dir) / f"{stem}.slp.training_job.zip", files)


#: Files of a trained model folder that inference needs; the rest stays behind.
MODEL_FILES = ("best.ckpt", "training_config.yaml", "initial_config.yaml")


def make_inference_package(
    labels_path: str | Path,
    model_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    command: str = "predict",
    device: str | None = "cpu",
    extra_args: Sequence[str] = (),
) -> Path:
    """Write ``<stem>.slp.inference_job.zip``: frames, model folders and ``jobs.yaml``.

    ``jobs.yaml`` has no training entries and one SLEAP-style inference entry whose
    ``models`` point at ``models/<run name>`` inside the zip. ``command`` (``track``
    or ``predict``), ``device`` and ``extra_args`` are this project's additions.
    """
    labels_path = Path(labels_path)
    stem = labels_path.name.removesuffix(".slp").removesuffix(".pkg")
    pkg_name = f"{stem}.pkg.slp"
    files: list[tuple[str, Path | bytes]] = [(pkg_name, labels_path)]
    models = []
    for model_dir in model_dirs:
        model_dir = Path(model_dir)
        present = [name for name in MODEL_FILES if (model_dir / name).is_file()]
        if "best.ckpt" not in present:
            raise ValueError(f"{model_dir} has no best.ckpt; train the model first")
        for name in present:
            files.append((f"models/{model_dir.name}/{name}", model_dir / name))
        models.append(f"models/{model_dir.name}")
    entry = {
        "data_path": pkg_name,
        "models": models,
        "output_path": f"{pkg_name}.predictions.slp",
        "type": "labels",
        "only_suggested_frames": False,
        "tracking": {},
        "command": command,
        "device": device,
        "extra_args": list(extra_args),
    }
    files.append(("jobs.yaml", yaml.safe_dump({"training": [], "inference": [entry]}).encode()))
    return _write_zip(Path(out_dir) / f"{stem}.slp.inference_job.zip", files)
