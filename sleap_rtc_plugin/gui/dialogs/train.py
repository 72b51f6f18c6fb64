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
from .connection import client_api
from .job import follow, thread_progress
from .remote_base import RemoteLearningDialog

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

    def collect(self) -> packaging.TrainingRequest:
        return packaging.collect_training_request(self)

    def open_loss_viewer(self):
        from sleap.gui.widgets.monitor import LossViewer

        win = LossViewer(zmq_ports={"publish_port": free_port(), "controller_port": free_port()})
        win.resize(600, 400)
        win.setWindowTitle("Training Model - remote worker")
        win.set_message("Sending the training package to the worker…")
        if win.cancel_button is not None:
            win.cancel_button.clicked.connect(self.cancel_or_close)
        win.show()
        self.loss_viewer = win
        return win

    async def run_job(self, request: packaging.TrainingRequest, spec: Any) -> None:
        self.panel.status.setText("Building the training package…")
        package = await asyncio.to_thread(
            packaging.write_training_package, request, self.workdir(), thread_progress(self.panel, "Embedding frames")
        )
        viewer = self.open_loss_viewer()
        ports = viewer.zmq_ports
        project_dir = Path(request.labels_filename).parent
        self.handle = client_api().submit_training(
            package, spec, project_dir=project_dir,
            publish_port=ports["publish_port"], controller_port=ports["controller_port"],
        )
        logger.info("training job %s submitted (%s)", self.handle.job_id, package.name)
        try:
            outcome = await follow(self.handle, self.panel)
        finally:
            self.handle = None
            viewer.close()
        self.model_dirs = list(outcome.model_dirs)
        self.after_training()

    def after_training(self) -> None:
        """Let SLEAP's own inference dialog see the new models, and say where they are."""
        inference = self.main_window._child_windows.get("inference")
        if inference is not None:
            inference.update_file_lists()
        names = "\n".join(str(p) for p in self.model_dirs) or "(no model directories were returned)"
        self.panel.status.setText(f"Training finished: {len(self.model_dirs)} model(s) saved.")
        self.inform("Remote training finished", f"Trained model(s) saved to:\n{names}\n\nUse Predict → Run Inference… or Track remotely… to use them.")
