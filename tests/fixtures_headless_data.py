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


def make_video_labels(folder: Path, *, n_frames: int = 24, labeled: int = 16, name: str = "robot") -> tuple[Path, Path]:
    """Write ``folder/<name>.mp4`` and ``folder/labels.slp`` (``labeled`` user-labeled frames on it)."""
    import imageio.v3 as iio
    import sleap_io as sio

    folder.mkdir(parents=True, exist_ok=True)
    frames, points = sample_data._blob_frames(n_frames, (64, 64), 2, 1, seed=0)
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


def write_config(path: Path, *, labels_name: str | None, epochs: int = 1, ckpt_dir: str | None = None, run_name: str | None = None) -> Path:
    """A single-instance sleap-nn config (grayscale input) that trains in seconds on a CPU."""
    config = sample_data.training_config("single_instance", labels_name=labels_name or "", node_names=["node0", "node1"], epochs=epochs,
                                         steps_per_epoch=4, run_name=run_name, ckpt_dir=ckpt_dir)  # type: ignore[arg-type]
    config["data_config"]["preprocessing"]["ensure_grayscale"] = True
    if labels_name is None:
        del config["data_config"]["train_labels_path"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
