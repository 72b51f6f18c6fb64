"""The checks SLEAP makes before local training/inference, with SLEAP's own words.

Mirrors ``MainWindow._show_learning_dialog`` (sleap/gui/app.py) so remote work is
refused for exactly the same reasons and the user reads the same guidance.
"""

from __future__ import annotations

from typing import Any


def project_problem(window: Any) -> str | None:
    """Why remote training/inference cannot start now, or ``None`` when it can."""
    if "inference" in getattr(window, "overlays", {}):
        return (
            "In order to use this function you must first quit and re-open SLEAP to "
            "release resources used by visualizing model outputs."
        )
    labels = getattr(window, "labels", None)
    if labels is None or len(labels.videos) == 0:
        return "This project has no videos. Please add a video before running training or inference."
    if not window.state["filename"]:
        return "Please save your project before running training or inference."
    if window.state["has_changes"]:
        return "You have unsaved changes. Please save before running training or inference."
    return None
