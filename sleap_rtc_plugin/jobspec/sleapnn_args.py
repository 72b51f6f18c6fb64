"""What a package may hand to sleap-nn, and the proof that every path stays in the job.

A package comes from a remote client. Its ``jobs.yaml`` may carry extra
``sleap-nn track``/``predict`` arguments and a device, and its training configs are
read by sleap-nn as they are. Either could name a path (``-o /elsewhere``,
``trainer_config.run_name: ../../..``) and make sleap-nn write outside the job dir,
so:

* extra arguments come from a fixed allow-list of tuning flags whose values are
  numbers, booleans or one of a few words -- never a path; anything else is refused
  naming the flag;
* the device is one of sleap-nn's device names;
* a training config may not use Hydra's own keys (``defaults``, ``hydra``) or
  OmegaConf interpolation (``${oc.env:...}`` would copy the worker's environment
  into the returned ``training_config.yaml``), and its path-valued keys must be
  relative paths inside the package; output locations (``ckpt_dir``,
  ``run_name``, ZMQ ports) are the worker's and overridden on the command line;
* a run name becomes one plain folder name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..protocol.names import is_plain_file_name
from .refusals import PackageError

_INT = "int"
_FLOAT = "float"
_SWITCH = "switch"

#: Flags of both ``sleap-nn track`` and ``sleap-nn predict`` (0.3) that tune inference
#: and tracking and cannot name a file. Value: ``int``, ``float``, ``switch`` (no value),
#: a set of allowed words, or a compiled pattern.
COMMON_FLAGS: dict[str, Any] = {
    **{f: _INT for f in (
        "--batch_size", "-b", "--max_instances", "-n", "--max_height", "--max_width", "--integral_patch_size",
        "--n_points", "--queue_maxsize", "--crop_size", "--filter_min_visible_nodes", "--tracking_window_size",
        "--min_new_track_points", "--min_match_points", "--max_tracks", "--of_window_size", "--of_max_levels",
        "--kf_init_frame_count", "--kf_reset_gap_size", "--tracking_target_instance_count",
        "--tracking_pre_cull_to_target", "--tracking_clean_instance_count", "--video_index",
    )},
    **{f: _FLOAT for f in (
        "--input_scale", "--max_edge_length_ratio", "--dist_penalty_weight", "--min_instance_peaks",
        "--min_line_scores", "--peak_threshold", "--filter_overlapping_threshold",
        "--filter_min_visible_node_fraction", "--filter_min_mean_node_score", "--filter_min_instance_score",
        "--robust_best_instance", "--of_img_scale", "--oks_stddev", "--tracking_pre_cull_iou_threshold",
        "--tracking_clean_iou_threshold",
    )},
    **{f: _SWITCH for f in (
        "--tracking", "-t", "--ensure_rgb", "--no-ensure_rgb", "--ensure_grayscale", "--no-ensure_grayscale",
        "--only_labeled_frames", "--only_suggested_frames", "--exclude_user_labeled", "--only_predicted_frames",
        "--no_empty_frames", "--filter_overlapping", "--use_flow", "--use_kalman", "--post_connect_single_breaks",
    )},
    "--filter_overlapping_method": {"iou", "oks"},
    "--integral_refinement": {"integral", "None"},
    "--candidates_method": {"fixed_window", "local_queues"},
    "--features": {"keypoints", "centroids", "bboxes", "masks", "embeddings"},
    "--scoring_method": {"oks", "cosine_sim", "iou", "mask_iou", "euclidean_dist"},
    "--scoring_reduction": {"mean", "max", "robust_quantile"},
    "--track_matching_method": {"hungarian", "greedy"},
    "--kf_track_features": {"centroid", "keypoints"},
    "--kf_node_indices": re.compile(r"[0-9]+(,[0-9]+)*"),
    "--frames": re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*"),
    "--anchor_part": re.compile(r"[A-Za-z0-9_ .-]{1,64}"),
}

#: ``sleap-nn predict`` only.
PREDICT_FLAGS: dict[str, Any] = {
    "--centroid_peak_threshold": _FLOAT,
    "--filter_min_centroid_distance": _FLOAT,
    "--track_buffer": _INT,
    "--min_hits": _INT,
    "--track_high_threshold": _FLOAT,
    "--track_low_threshold": _FLOAT,
    "--new_track_threshold": _FLOAT,
    "--min_match_similarity": _FLOAT,
    "--tracker": {"classic", "sort", "deepsort", "strongsort", "bytetrack", "botsort", "ocsort", "deepocsort"},
}

_DEVICE = re.compile(r"(cpu|cuda|mps|auto)|cuda:[0-9]{1,2}")


def _value_ok(kind: Any, value: str) -> bool:
    if kind == _INT:
        return re.fullmatch(r"-?[0-9]{1,12}", value) is not None
    if kind == _FLOAT:
        return re.fullmatch(r"-?([0-9]{1,12}(\.[0-9]*)?|\.[0-9]+)([eE]-?[0-9]{1,3})?", value) is not None
    if isinstance(kind, set):
        return value in kind
    return kind.fullmatch(value) is not None


def check_extra_args(args: Sequence[Any], command: str, where: str) -> list[str]:
    """``args`` if every flag is on the allow-list with a value of the right kind.

    Refuses (``bad_package``) paths, output/data/model/device flags and unknown flags,
    naming the first offending one. ``--flag=value`` is accepted and split.
    """
    allowed = {**COMMON_FLAGS, **(PREDICT_FLAGS if command == "predict" else {})}
    out: list[str] = []
    items = [str(a) for a in args]
    i = 0
    while i < len(items):
        arg = items[i]
        flag, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        kind = allowed.get(flag)
        if kind is None:
            raise PackageError(
                f"{where}: sleap-nn {command} argument {arg[:60]!r} is not allowed; a package may pass only "
                "inference/tracking tuning flags (the worker chooses data, model, output and device paths)"
            )
        if kind == _SWITCH:
            if eq:
                raise PackageError(f"{where}: sleap-nn flag {flag} takes no value")
            out.append(flag)
            i += 1
            continue
        if eq:
            value, i = inline, i + 1
        elif i + 1 < len(items):
            value, i = items[i + 1], i + 2
        else:
            raise PackageError(f"{where}: sleap-nn flag {flag} needs a value")
        if not _value_ok(kind, value):
            raise PackageError(f"{where}: value {value[:60]!r} for sleap-nn flag {flag} is not allowed")
        out += [flag, value]
    return out


def frame_ranges(frames: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` → ``"1-3,7"``: sleap-nn's ``--frames`` syntax, short enough for argv."""
    parts: list[str] = []
    ordered = sorted(set(frames))
    if not ordered:
        return ""
    start = prev = ordered[0] if ordered else 0
    for f in ordered[1:] + [None]:  # type: ignore[list-item]
        if f is not None and f == prev + 1:
            prev = f
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if f is not None:
            start = prev = f
    return ",".join(parts)


def check_device(device: Any, where: str) -> str | None:
    """A sleap-nn device name (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ``auto``) or None."""
    if device is None:
        return None
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise PackageError(f"{where}: device {str(device)[:40]!r} must be cpu, cuda, cuda:N, mps or auto")
    return device


def safe_run_name(name: Any, fallback: str) -> str:
    """``name`` as one plain folder name, or ``fallback`` when nothing of it is usable.

    SLEAP's run names (``251130_120000.centroid.n=20``) pass unchanged; separators,
    ``..`` and control characters become ``_``.
    """
    text = "" if name is None else str(name)
    text = re.sub(r"[^A-Za-z0-9_.=+ -]+", "_", text).strip(" .")
    text = re.sub(r"\.{2,}", "_", text)[:128]
    return text if text and is_plain_file_name(text) else fallback


#: Config keys sleap-nn reads as paths the package may fill (relative to the package).
PACKAGE_PATH_KEYS = (
    ("data_config", "train_labels_path"),
    ("data_config", "val_labels_path"),
    ("data_config", "test_file_path"),
    ("data_config", "cache_img_path"),
    ("trainer_config", "resume_ckpt_path"),
    ("model_config", "pretrained_backbone_weights"),
    ("model_config", "pretrained_head_weights"),
)
_FORBIDDEN_TOP = ("defaults", "hydra")


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def inside(root: Path, path: Path | str) -> bool:
    """True when ``path`` (relative ones taken from ``root``) resolves under ``root``."""
    base = os.path.realpath(root)
    real = os.path.realpath(os.path.join(base, path))
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def check_training_config(config: dict, root: Path, name: str) -> None:
    """Refuse a config that would make sleap-nn read or write outside ``root``."""
    for key in _FORBIDDEN_TOP:
        if key in config:
            raise PackageError(f"config {name}: top-level key {key!r} is not allowed (Hydra settings are the worker's)")
    if any("${" in s for s in _strings(config)):
        raise PackageError(f"config {name}: interpolations ('${{...}}') are not allowed in a package's config")
    for section, key in PACKAGE_PATH_KEYS:
        sub = config.get(section)
        value = sub.get(key) if isinstance(sub, dict) else None
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str) or not item or os.path.isabs(item) or "\\" in item or not inside(root, item):
                raise PackageError(
                    f"config {name}: {section}.{key} {str(item)[:80]!r} must be a relative path inside the package"
                )


def check_argv_paths(paths: Iterable[Path | str], root: Path, what: str) -> None:
    """The last lock before sleap-nn starts: every path the worker put on its command
    line resolves inside the job dir ``root``."""
    for path in paths:
        if not inside(root, path):
            raise PackageError(f"{what}: {str(path)[:120]!r} resolves outside the job dir {root}")
