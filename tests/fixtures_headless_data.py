"""Real SLEAP data the way most users have it: labels that reference an external video file.

``make_video_labels`` renders the blob frames of :mod:`sleap_rtc_plugin.sample_data` into
an ``.mp4`` and writes a ``labels.slp`` whose video is that file (no embedded frames);
``write_config`` writes a sleap-nn config for it, tuned to train in seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.sample_data import make_video_labels  # noqa: F401  (re-exported for the tests)


def write_config(path: Path, *, labels_name: str | None, epochs: int = 1, ckpt_dir: str | None = None, run_name: str | None = None) -> Path:
    """A single-instance sleap-nn config (grayscale input) that trains in seconds on a CPU."""
    config = sample_data.training_config("single_instance", labels_name=labels_name or "", node_names=["node0", "node1"], epochs=epochs,
                                         steps_per_epoch=4, run_name=run_name, ckpt_dir=ckpt_dir)  # type: ignore[arg-type]
    config["data_config"]["preprocessing"]["ensure_grayscale"] = True
    if labels_name is None:
        del config["data_config"]["train_labels_path"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
