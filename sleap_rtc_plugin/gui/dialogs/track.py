"""Track remotely…: SLEAP's inference dialog (models from ``<project>/models/``,
frame targets), run on a worker; predictions are merged into the open project
the way SLEAP merges local results.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from .. import packaging
from .connection import client_api
from .job import follow, thread_progress
from .remote_base import DetachedJob, RemoteLearningDialog

logger = logging.getLogger(__name__)


class RemoteInferenceDialog(RemoteLearningDialog):
    RUN_TEXT = "Track remotely"
    TITLE = "Track remotely"

    def __init__(self, window: Any, *, defaults: Any = None):
        super().__init__("inference", window, defaults=defaults)
        self.merged_count: int | None = None
        try:
            self.frame_selection = window._get_frames_for_prediction()
        except Exception as exc:  # keep the dialog usable with SLEAP's defaults
            logger.debug("no frame selection from the window: %s", exc)

    def collect(self) -> packaging.InferenceRequest:
        request = packaging.collect_inference_request(self)
        if not request.model_dirs:
            raise ValueError("Choose a trained model (from this project's models/ folder) to track with.")
        return request

    async def run_job(self, request: packaging.InferenceRequest, spec: Any) -> None:
        tracker = self.panel.tracker("track")
        tracker.packaging(f"Packaging {request.frame_count} frame(s) and {len(request.model_dirs)} model(s)…")
        package = await asyncio.to_thread(
            packaging.write_inference_package, request, self.workdir(), thread_progress(self.panel, "Embedding frames")
        )
        project_dir = Path(request.labels_filename).parent
        self.handle = client_api().submit_inference(package.path, spec, project_dir=project_dir, inputs=package.inputs,
                                                     queue=self.queue_box.queue_options())
        logger.info("inference job %s submitted (%s, %d video(s) sent whole)", self.handle.job_id, package.path.name, len(package.inputs))
        await self._follow_to_end(request, spec, project_dir)

    async def attach_job(self, job: DetachedJob) -> None:
        """Follow a tracking job this dialog detached from, then merge its predictions."""
        self.panel.tracker("track")
        self.handle = client_api().attach(job.job_id, job.spec, project_dir=job.project_dir, kind="track")
        await self._follow_to_end(job.request, job.spec, job.project_dir)

    async def _follow_to_end(self, request: packaging.InferenceRequest, spec: Any, project_dir: Path) -> None:
        try:
            outcome = await follow(self.handle, self.panel, on_event=self.maybe_detach)
        finally:
            self.handle = None
        if outcome.detached:
            self.remember_detached(outcome, spec, project_dir, "track")
            return
        files = outcome.prediction_files or ([outcome.predictions] if outcome.predictions else [])
        if not files:
            raise RuntimeError("the worker finished without returning predictions")
        self.merge(files, request)

    def merge(self, predictions: list[Path], request: packaging.InferenceRequest) -> int:
        """Merge on the GUI thread (the open labels are Qt-owned state); one file per video."""
        count = packaging.merge_prediction_files(self.main_window.labels, predictions, request.inference_params, request)
        self.merged_count = count
        self.main_window._handle_learning_finished(count)
        if self.panel.job_stages is not None:
            self.panel.job_stages.done(f"Added predictions on {count} frame(s).")
        saved = "\n".join(str(p) for p in predictions)
        self.inform("Remote tracking finished", f"Predictions for {count} frame(s) were added to the project.\nSaved: {saved}")
        return count
