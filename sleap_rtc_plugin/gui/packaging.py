"""Build job packages from the open project, the way SLEAP's "Export training job package" does.

Training packages are byte-for-byte SLEAP's own format (``<stem>.pkg.slp`` with the
user-labeled (+ suggested) frames embedded, one ``<head>.yaml`` per model,
``train-script.sh``, ``inference-script.sh``, ``jobs.yaml``), written by SLEAP's
``runners.write_pipeline_files``. Inference packages use the same layout: the frames
to predict embedded in ``<stem>.pkg.slp``, the chosen trained models under
``models/<run>/`` and an ``inference`` list in ``jobs.yaml``.

Split in two on purpose: :func:`collect_*` read the Qt dialog on the GUI thread;
:func:`write_*` only touch files and labels and run in ``asyncio.to_thread`` so
embedding thousands of frames never freezes the window.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import yaml

from ..protocol.names import is_plain_file_name
from ..protocol.peer import INPUTS_DIR
from .inference_flags import sleap_inference_flags

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass
class TrainingRequest:
    """Everything read from SLEAP's training dialog that the package needs."""

    labels: Any
    labels_filename: str
    config_info_list: list
    inference_params: dict
    items_for_inference: Any
    include_suggestions: bool
    num_user_labeled_frames: int
    #: the Inference Target's frames to predict after training (video index -> frames); empty for "nothing"
    frames: dict[int, list[int]] = field(default_factory=dict)


@dataclass
class InferenceRequest:
    labels: Any
    labels_filename: str
    model_dirs: list[Path]
    frames: dict[int, list[int]]  # video index -> frame indices
    inference_params: dict = field(default_factory=dict)
    #: predictions file name -> project video index, filled when the package is written
    outputs: dict[str, int] = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return sum(len(v) for v in self.frames.values())


def collect_training_request(dialog: Any) -> TrainingRequest:
    """Read SLEAP's ``LearningDialog`` (training mode) exactly as its export does."""
    from sleap.gui.learning import runners

    pipeline_form_data = dialog.pipeline_form_widget.get_form_data()
    selection = dialog.frame_target_selector.get_selection()
    pipeline_form_data["_prediction_mode"] = selection.prediction_mode
    items = dialog.get_items_for_inference(pipeline_form_data)
    include_suggestions = any(
        isinstance(item, runners.DatasetItemForInference) and item.frame_filter == "suggested" for item in items.items
    )
    return TrainingRequest(
        labels=dialog.labels,
        labels_filename=dialog.labels_filename,
        config_info_list=dialog.get_every_head_config_data(pipeline_form_data),
        inference_params=pipeline_form_data,
        items_for_inference=items,
        include_suggestions=include_suggestions,
        num_user_labeled_frames=len(dialog.labels.user_labeled_frames),
        frames=frames_to_predict(dialog, pipeline_form_data),
    )


def frames_to_predict(dialog: Any, pipeline_form_data: dict) -> dict[int, list[int]]:
    """The dialog's frame target as ``video index -> frames`` (empty for "nothing")."""
    labels = dialog.labels
    frames: dict[int, list[int]] = {}
    for video, idxs in dialog.get_selected_frames_to_predict(pipeline_form_data).items():
        if idxs is None:
            idxs = list(range(len(video)))
        idxs = _expand_frames(idxs)
        if idxs:
            frames[labels.videos.index(video)] = idxs
    return frames


def import_sleap_nn_here() -> None:
    """Import sleap-nn (and with it torch) on the calling thread, the GUI thread.

    SLEAP's package writer imports sleap-nn lazily, and :func:`write_training_package` runs
    in a worker thread: torch's first import off the main thread, while Qt runs on it,
    crashed the whole SLEAP process (a segfault) in the GUI tests. Once imported, the
    writer's import is a dictionary lookup. The first remote training of a session waits
    for the import on the GUI thread, as SLEAP's own Run does.
    """
    import sleap_nn.config.training_job_config  # noqa: F401


def write_training_package(req: TrainingRequest, out_dir: Path, progress: ProgressFn | None = None) -> Path:
    """Write ``<labels>.slp.training_job.zip`` into ``out_dir``; returns its path.

    Same contents as SLEAP's ``LearningDialog.export_package``: the embedded labels
    (``user`` or ``user+suggestions``, as ``export_dataset_gui`` picks) plus
    ``write_pipeline_files`` output -- without inference entries, which run as a
    separate job once training is done.
    """
    from sleap.gui.learning import runners

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem_pkg = Path(req.labels_filename).with_suffix(".pkg.slp").name
    with tempfile.TemporaryDirectory(prefix="sleap-rtc-pkg-") as tmp:
        _save_embedded(req.labels, Path(tmp) / stem_pkg, "user+suggestions" if req.include_suggestions else "user", progress)
        runners.write_pipeline_files(
            output_dir=tmp,
            labels_filename=stem_pkg,
            config_info_list=req.config_info_list,
            inference_params=req.inference_params,
            # The Inference Target runs as its own job after training (dialogs/after_training.py):
            # SLEAP's package would name the project's .slp, which never travels with it.
            items_for_inference=runners.ItemsForInference(items=[], total_frame_count=0),
            num_user_labeled_frames=req.num_user_labeled_frames,
        )
        zip_base = out_dir / f"{Path(req.labels_filename).name}.training_job"
        archive = shutil.make_archive(str(zip_base), "zip", root_dir=tmp)
    logger.info("training package written: %s", archive)
    return Path(archive)


def collect_inference_request(dialog: Any) -> InferenceRequest:
    """Read SLEAP's ``LearningDialog`` (inference mode): models and frames to predict."""
    pipeline_form_data = dialog.pipeline_form_widget.get_form_data()
    selection = dialog.frame_target_selector.get_selection()
    pipeline_form_data["_prediction_mode"] = selection.prediction_mode
    config_info_list = dialog.get_every_head_config_data(pipeline_form_data)
    model_dirs = []
    for info in config_info_list:
        path = Path(info.path)
        model_dirs.append(path.parent if path.is_file() else path)
    labels = dialog.labels
    frames = frames_to_predict(dialog, pipeline_form_data)
    return InferenceRequest(
        labels=labels,
        labels_filename=dialog.labels_filename,
        model_dirs=model_dirs,
        frames=frames,
        inference_params=pipeline_form_data,
    )


def _expand_frames(idxs: list[int]) -> list[int]:
    """SLEAP writes a whole range as ``[start, -end]``; expand it to frame indices."""
    if len(idxs) == 2 and idxs[1] < 0:
        return list(range(idxs[0], -idxs[1]))
    return sorted(set(int(i) for i in idxs if i >= 0))


MEDIA_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm"}


@dataclass
class InferencePackage:
    """The package, and the videos that travel beside it (``inputs/<name>`` on the worker)."""

    path: Path
    inputs: dict[str, Path] = field(default_factory=dict)


def send_whole_video(video: Any, frames: list[int]) -> Path | None:
    """The video's own file when sending it beats embedding the frames, else None.

    Embedding re-encodes every frame into a new package for every job; the video file
    sent on its own is content-addressed, so a second job on the same video moves
    nothing. Worth it for a single media file the worker can decode (not an image
    folder, not frames already embedded in an ``.slp``) when at least half of its
    frames are wanted -- "entire video", "all videos", long clips.
    """
    filename = getattr(video, "filename", None)
    if not isinstance(filename, str) or Path(filename).suffix.lower() not in MEDIA_SUFFIXES:
        return None
    path = Path(filename)
    if not path.is_file():
        return None
    try:
        total = len(video)
    except Exception:  # a video whose backend cannot open here: embed what SLEAP can read
        return None
    return path if total and len(frames) * 2 >= total else None


def write_inference_package(req: InferenceRequest, out_dir: Path, progress: ProgressFn | None = None) -> InferencePackage:
    """Write ``<labels>.slp.inference_job.zip``: models, ``jobs.yaml``, and the frames to predict.

    Frames are embedded in ``<labels>.pkg.slp``, except for videos :func:`send_whole_video`
    picks: those are returned as inputs to send beside the package.
    """
    if not req.model_dirs:
        raise ValueError("Choose at least one trained model to track with.")
    if not req.frame_count:
        raise ValueError("There are no frames to predict for this selection.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem_pkg = Path(req.labels_filename).with_suffix(".pkg.slp").name
    inputs: dict[str, Path] = {}
    data_paths: dict[int, str] = {}
    for v, fs in req.frames.items():
        whole = send_whole_video(req.labels.videos[v], fs)
        if whole is not None:
            name = _unique_name(whole.name, list(inputs))
            inputs[name] = whole
            data_paths[v] = f"{INPUTS_DIR}/{name}"
    with tempfile.TemporaryDirectory(prefix="sleap-rtc-pkg-") as tmp:
        root = Path(tmp)
        embed = [(req.labels.videos[v], f) for v, fs in req.frames.items() if v not in data_paths for f in fs]
        if embed:
            _save_embedded(req.labels, root / stem_pkg, embed, progress)
        stamp = datetime.now().strftime("%y%m%d_%H%M%S")
        req.outputs = {}
        for v in req.frames:
            base = prediction_file_name(req.labels.videos[v], v, req.labels_filename, stamp)
            name, n = base, 1
            while name in req.outputs:  # two videos with one file name, in different folders
                n += 1
                name = base.removesuffix(".predictions.slp") + f"-{n}.predictions.slp"
            req.outputs[name] = v
        by_video = {v: n for n, v in req.outputs.items()}
        model_names: list[str] = []
        for model_dir in req.model_dirs:
            name = _unique_name(model_dir.name, model_names)
            shutil.copytree(model_dir, root / "models" / name, ignore=shutil.ignore_patterns("*.slp", "viz"))
            model_names.append(name)
        extra_args = sleap_inference_flags(req.inference_params)  # SLEAP's peak threshold, tracker, … as its runner passes them
        jobs = {
            "training": [],
            "inference": [
                {
                    "models": [f"models/{n}" for n in model_names],
                    "output_path": by_video[v],
                    "frames": fs,
                    "extra_args": extra_args,
                    **({"data_path": data_paths[v], "type": "video"} if v in data_paths else {"data_path": stem_pkg, "type": "labels", "video_index": v}),
                }
                for v, fs in req.frames.items()
            ],
        }
        (root / "jobs.yaml").write_text(yaml.safe_dump(jobs))
        archive = shutil.make_archive(str(out_dir / f"{Path(req.labels_filename).name}.inference_job"), "zip", root_dir=tmp)
    logger.info("inference package written: %s (%d frames, %d models, %d video(s) sent whole)", archive, req.frame_count, len(model_names), len(inputs))
    return InferencePackage(Path(archive), inputs)


def _unique_name(name: str, taken: list[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _save_embedded(labels: Any, path: Path, embed: Any, progress: ProgressFn | None) -> None:
    """Save a copy of ``labels`` with images embedded; never mutates the open project."""
    import sleap_io as sio

    def _cb(current: int, total: int, phase: str = "embed") -> bool:
        if progress is not None:
            progress(current, total)
        return True  # sleap-io reads a falsy answer as "cancel"

    sio.save_slp(labels, str(path), embed=embed, embed_inplace=False, verbose=False, progress_callback=_cb)


def merge_predictions(labels: Any, predictions_path: Path, inference_params: dict, requested: list[int] | None = None) -> int:
    """Merge a predictions ``.slp`` into the open labels as SLEAP merges local results.

    The predictions were made on the package's embedded copy, so each frame is first
    put back on the project's own video (same index), then SLEAP's
    ``InferenceTask.merge_results`` does the rest (empty-instance cleanup, "replace"
    vs "add" prediction mode, clear-all-first).
    """
    import sleap_io as sio
    from sleap.gui.learning.runners import InferenceTask

    predicted = sio.load_slp(str(predictions_path))
    mapping = _video_mapping(predicted.videos, labels.videos, requested)
    for lf in predicted.labeled_frames:
        lf.video = mapping[id(lf.video)]
    task = InferenceTask(trained_job_paths=["remote"], inference_params=inference_params, labels=labels)
    task.results = list(predicted.labeled_frames)
    return task.merge_results()


def merge_prediction_files(labels: Any, files: list[Path], inference_params: dict, req: InferenceRequest | None = None) -> int:
    """Merge every predictions file a job returned (one per video); frames merged in all.

    The Track dialog knows its request, so each file merges only into the videos it asked
    for; the Remote Jobs panel fetching a job from an earlier session does not, and lets the
    file's own videos decide."""
    return sum(
        merge_predictions(labels, Path(path), inference_params, requested=predicted_videos(Path(path), req) if req is not None else None)
        for path in files
    )


def prediction_file_name(video: Any, video_index: int, labels_filename: str, timestamp: str) -> str:
    """SLEAP's own name for a predictions file (``runners.InferenceTask.make_predict_cli_call``):
    ``<video file>.<timestamp>.predictions.slp``, or ``video<N>_<labels file>.…`` for a video
    with no file of its own (image sequences, embedded frames)."""
    filename = getattr(video, "filename", None)
    if isinstance(filename, (str, Path)) and not str(filename).endswith(".slp"):
        source = Path(str(filename).replace("\\", "/")).name
    else:
        source = f"video{video_index}_{Path(labels_filename).name}"
    name = f"{source}.{timestamp}.predictions.slp"
    return name if is_plain_file_name(name) and not name.startswith(".") else f"video{video_index}.{timestamp}.predictions.slp"


def predicted_videos(predictions_path: Path, req: InferenceRequest) -> list[int]:
    """The project video(s) a predictions file is for: the name the package gave it (a ``-N``
    a clash added aside), an older ``.video<N>.`` name, else every requested one."""
    name = Path(predictions_path).name
    plain = re.sub(r"-\d+(\.predictions\.slp)$", r"\1", name)
    for candidate in (name, plain):
        if candidate in req.outputs and req.outputs[candidate] in req.frames:
            return [req.outputs[candidate]]
    match = re.search(r"\.video(\d+)\.predictions\.slp$", Path(predictions_path).name)
    if match and int(match.group(1)) in req.frames:
        return [int(match.group(1))]
    return list(req.frames)


def _video_mapping(predicted: list, project: list, requested: list[int] | None) -> dict[int, Any]:
    """Which project video each predicted video stands for.

    Same count: by index (the package keeps every project video, in order). Otherwise
    by the embedded copy's source video file name, and for a single video by the one
    video that was requested.
    """
    if len(predicted) == len(project):
        return {id(p): project[i] for i, p in enumerate(predicted)}
    if requested and len(requested) == 1 and len(predicted) == 1:
        return {id(predicted[0]): project[requested[0]]}
    by_name = {Path(str(v.filename)).name: v for v in project}
    mapping = {}
    for p in predicted:
        source = getattr(p, "source_video", None)
        name = Path(str(getattr(source, "filename", "") or p.filename)).name
        if name in by_name:
            mapping[id(p)] = by_name[name]
        else:
            raise ValueError(f"cannot tell which project video the predictions for {p.filename!r} belong to")
    return mapping
