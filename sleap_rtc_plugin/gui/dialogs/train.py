"""Train remotely…: SLEAP's training configuration, sent to a worker.

The package is SLEAP's own training job package; curves appear in SLEAP's own
``LossViewer``, which binds its ZMQ ports locally while the client's bridge
republishes the worker's events into them (and carries Stop Early back).
Trained models land in ``<project>/models/`` where SLEAP's inference dialog finds them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

from .. import packaging
from .after_training import InferenceSummary, predict_after_training, reset_loss_viewer, wants_inference
from .connection import client_api
from .job import follow, thread_progress
from .remote_base import DetachedJob, RemoteLearningDialog

logger = logging.getLogger(__name__)


def free_port() -> int:
    """A loopback TCP port nobody holds now (LossViewer re-picks if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RemoteTrainingDialog(RemoteLearningDialog):
    RUN_TEXT = "Train remotely"
    TITLE = "Train remotely"

    def __init__(self, window: Any, *, defaults: Any = None):
        super().__init__("training", window, defaults=defaults)
        self.loss_viewer = None
        self.model_dirs: list[Path] = []
        self.inference_summary: InferenceSummary | None = None
        try:  # the Inference Target's choices, as SLEAP's own training dialog gets them
            self.frame_selection = window._get_frames_for_prediction()
        except Exception as exc:  # keep the dialog usable with SLEAP's defaults
            logger.debug("no frame selection from the window: %s", exc)

    def collect(self) -> packaging.TrainingRequest:
        return packaging.collect_training_request(self)

    def open_loss_viewer(self, request: packaging.TrainingRequest | None = None):
        from sleap.gui.widgets.monitor import LossViewer

        win = LossViewer(zmq_ports={"publish_port": free_port(), "controller_port": free_port()})
        win.resize(600, 400)
        win.setWindowTitle("Training Model - remote worker")
        if request is not None:
            reset_loss_viewer(win, request)  # plateau patience, as SLEAP's runner; before the buttons are wired (reset remakes them)
        win.set_message("Sending the training package to the worker…")
        if win.cancel_button is not None:
            win.cancel_button.clicked.connect(self.cancel_job)
        win.show()
        self.loss_viewer = win
        return win

    async def run_job(self, request: packaging.TrainingRequest, spec: Any) -> None:
        tracker = self.panel.tracker("train")
        tracker.packaging("Building the training package…")
        packaging.import_sleap_nn_here()
        package = await asyncio.to_thread(
            packaging.write_training_package, request, self.workdir(), thread_progress(self.panel, "Embedding frames")
        )
        viewer = self.open_loss_viewer(request)
        ports = viewer.zmq_ports
        project_dir = Path(request.labels_filename).parent
        self.handle = client_api().submit_training(
            package, spec, project_dir=project_dir,
            publish_port=ports["publish_port"], controller_port=ports["controller_port"], queue=self.queue_box.queue_options(),
        )
        logger.info("training job %s submitted (%s)", self.handle.job_id, package.name)
        await self._follow_to_end(viewer, spec, project_dir)

    async def attach_job(self, job: DetachedJob) -> None:
        """Follow a training this dialog detached from: curves again, then its models."""
        self.panel.tracker("train")
        viewer = self.open_loss_viewer()
        viewer.set_message(f"Following job {job.job_id} on {job.worker_name} again…")
        ports = viewer.zmq_ports
        self.handle = client_api().attach(job.job_id, job.spec, project_dir=job.project_dir, kind="train",
                                          publish_port=ports["publish_port"], controller_port=ports["controller_port"])
        await self._follow_to_end(viewer, job.spec, job.project_dir)

    async def _follow_to_end(self, viewer: Any, spec: Any, project_dir: Path) -> None:
        try:
            outcome = await follow(self.handle, self.panel, on_event=self.maybe_detach)
        finally:
            self.handle = None
            viewer.close()
        if outcome.detached:
            self.remember_detached(outcome, spec, project_dir, "train")
            return
        self.model_dirs = list(outcome.model_dirs)
        predict = isinstance(self._request, packaging.TrainingRequest) and wants_inference(self._request) and bool(self.model_dirs)
        self.after_training(quiet=predict)
        if predict:
            self.inference_summary = await predict_after_training(self, self._request, self.model_dirs, spec)
            if self.panel.job_stages is not None:
                self.panel.job_stages.done(f"Training finished; predictions added on {self.inference_summary.frames_with_instances} frame(s).")
            self.inform("Inference complete", self.inference_summary.sleap_text())

    def after_training(self, quiet: bool = False) -> None:
        """Let SLEAP's own inference dialog see the new models, and say where they are."""
        inference = self.main_window._child_windows.get("inference")
        if inference is not None:
            inference.update_file_lists()
        names = "\n".join(str(p) for p in self.model_dirs) or "(no model directories were returned)"
        if self.panel.job_stages is not None:
            self.panel.job_stages.done(f"Training finished: {len(self.model_dirs)} model(s) saved in models/.")
        if not quiet:
            self.inform("Remote training finished", f"Trained model(s) saved to:\n{names}\n\nUse Predict → Run Inference… or Track remotely… to use them.")
