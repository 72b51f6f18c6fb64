"""What SLEAP does around a training that the remote flow must do too.

SLEAP's ``runners.run_learning_pipeline`` resets its ``LossViewer`` with the model's
plateau patience (so "Epochs in Plateau: N / 5", not "/ None"), and after training
predicts on the Train dialog's *Inference Target* and reports "Inference complete! …".

Predicting after a remote training re-uploads the new model with the frames, as
Track remotely… does, instead of asking the worker to keep the model around: the
trained model is small next to the frames, the path is the one Track remotely…
already proves, and it works whichever worker (or queue) takes the second job.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import packaging
from .connection import client_api
from .job import follow, thread_progress

logger = logging.getLogger(__name__)


def plateau_settings(request: packaging.TrainingRequest) -> dict[str, Any]:
    """``LossViewer.reset`` arguments for the first model to train, as SLEAP's runner passes them."""
    for info in request.config_info_list:
        if getattr(info, "dont_retrain", False):
            continue
        trainer = info.config.trainer_config
        early = getattr(trainer, "early_stopping", None)
        return {
            "what": str(info.head_name),
            "plateau_patience": getattr(early, "patience", None) if early is not None else None,
            "plateau_min_delta": getattr(early, "min_delta", None) if early is not None else None,
        }
    return {}


def reset_loss_viewer(viewer: Any, request: packaging.TrainingRequest) -> None:
    settings = plateau_settings(request)
    if settings:
        viewer.reset(**settings)
        viewer.setWindowTitle(f"Training Model - {settings['what']} (remote worker)")


def wants_inference(request: packaging.TrainingRequest) -> bool:
    """The Train dialog's Inference Target is not "nothing" (and names some frames)."""
    return bool(getattr(request, "frames", None))


@dataclass
class InferenceSummary:
    frames_total: int
    frames_with_instances: int
    files: list[Path]

    def sleap_text(self) -> str:
        """SLEAP's own words (``runners.InferenceProgressDialog.setFinished``)."""
        none_found = max(0, self.frames_total - self.frames_with_instances)
        return (
            f"<b>Inference complete!</b><br><br>"
            f"Inference ran on {self.frames_total:,} frames.<br>"
            f"Instances were predicted on {self.frames_with_instances:,} frames "
            f"({none_found:,} frame{'s' if none_found != 1 else ''} "
            f"with no instances found)."
        )


def inference_request(request: packaging.TrainingRequest, model_dirs: list[Path]) -> packaging.InferenceRequest:
    return packaging.InferenceRequest(
        labels=request.labels,
        labels_filename=request.labels_filename,
        model_dirs=list(model_dirs),
        frames={v: list(fs) for v, fs in request.frames.items()},
        inference_params=dict(request.inference_params),
    )


async def predict_after_training(dialog: Any, request: packaging.TrainingRequest, model_dirs: list[Path], spec: Any) -> InferenceSummary:
    """Send the new model(s) and the target frames to a worker, merge the predictions into
    the open project (on the GUI thread, as SLEAP merges), and return the counts."""
    req = inference_request(request, model_dirs)
    dialog.panel.tracker("track").packaging(f"Packaging {req.frame_count} frame(s) to predict with the new model…")
    package = await asyncio.to_thread(packaging.write_inference_package, req, dialog.workdir(), thread_progress(dialog.panel, "Embedding frames"))
    project_dir = Path(request.labels_filename).parent
    dialog.handle = client_api().submit_inference(package.path, spec, project_dir=project_dir, inputs=package.inputs)
    logger.info("inference after training: job %s (%d frames)", dialog.handle.job_id, req.frame_count)
    try:
        outcome = await follow(dialog.handle, dialog.panel)
    finally:
        dialog.handle = None
    files = outcome.prediction_files or ([outcome.predictions] if outcome.predictions else [])
    if not files:
        raise RuntimeError("the worker finished predicting without returning predictions")
    count = sum(
        packaging.merge_predictions(dialog.main_window.labels, path, req.inference_params, requested=packaging.predicted_videos(path, req))
        for path in files
    )
    dialog.main_window._handle_learning_finished(count)
    return InferenceSummary(frames_total=req.frame_count, frames_with_instances=count, files=list(files))
