"""Inference packaging choices that need no window: embed frames, or send the video itself."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import sleap_io as sio

from sleap_rtc_plugin.gui import packaging


@pytest.fixture
def clip(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    iio.imwrite(path, np.zeros((10, 32, 32, 3), np.uint8), fps=10, codec="libx264", plugin="pyav")
    return path


def test_whole_video_when_half_or_more_of_it_is_wanted(clip):
    video = sio.Video.from_filename(str(clip))
    assert packaging.send_whole_video(video, list(range(10))) == clip
    assert packaging.send_whole_video(video, list(range(5))) == clip
    assert packaging.send_whole_video(video, [0, 3, 7]) is None  # a few frames: embedding them is cheaper


def test_embedded_or_missing_videos_are_never_sent_whole(clip, tmp_path):
    video = sio.Video.from_filename(str(clip))
    clip.rename(tmp_path / "moved.mp4")
    assert packaging.send_whole_video(video, list(range(10))) is None  # not on this disk (any more)
    images = tmp_path / "frames.png"
    iio.imwrite(images, np.zeros((32, 32, 3), np.uint8))
    assert packaging.send_whole_video(sio.Video.from_filename(str(images)), [0]) is None


def test_each_predictions_file_merges_into_its_own_video():
    req = packaging.InferenceRequest(labels=None, labels_filename="p.slp", model_dirs=[], frames={0: [1], 2: [0, 1]})
    assert packaging.predicted_videos(Path("p.pkg.slp.video2.predictions.slp"), req) == [2]
    assert packaging.predicted_videos(Path("p.pkg.slp.video7.predictions.slp"), req) == [0, 2]  # not requested: ask every one
    assert packaging.predicted_videos(Path("other.slp"), req) == [0, 2]
