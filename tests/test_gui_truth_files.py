"""Files a remote job leaves in the project (issue 20, item 9): predictions named as SLEAP
names them, and a hidden ``.sleap-rtc/`` folder that does not keep installed results."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import sleap_io as sio
import yaml

from fixtures_e2e import cpu_worker, make_worker, project, spec_for  # noqa: F401
from fixtures_coordinator import coordinator, room  # noqa: F401
from fixtures_data import sample_labels, sample_root, trained_model, training_package  # noqa: F401
from sleap_rtc_plugin.client.api import submit_inference
from sleap_rtc_plugin.client.project_cache import tidy_after_install
from sleap_rtc_plugin.gui import packaging
from sleap_rtc_plugin.peer.cache import ContentCache

SLEAP_NAME = re.compile(r"^(?P<source>.+)\.(?P<stamp>\d{6}_\d{6})(?:-\d+)?\.predictions\.slp$")


def _clip(path: Path, n: int = 6) -> Path:
    iio.imwrite(path, np.zeros((n, 32, 32, 3), np.uint8), fps=10, codec="libx264", plugin="pyav")
    return path


def test_prediction_file_names_follow_sleaps_runner(tmp_path):
    clip = sio.Video.from_filename(str(_clip(tmp_path / "clip.mp4")))
    assert packaging.prediction_file_name(clip, 0, str(tmp_path / "project.slp"), "261130_120000") == "clip.mp4.261130_120000.predictions.slp"
    frames = [str(tmp_path / f"f{i}.png") for i in range(2)]
    for f in frames:
        iio.imwrite(f, np.zeros((8, 8), np.uint8))
    sequence = sio.Video.from_filename(frames)  # no file of its own: SLEAP names it after the project and the video index
    assert packaging.prediction_file_name(sequence, 3, str(tmp_path / "project.slp"), "261130_120000") == "video3_project.slp.261130_120000.predictions.slp"


def test_the_package_asks_for_sleap_names_and_merges_by_them(trained_model, tmp_path):  # noqa: F811
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    clip_a, clip_b = _clip(tmp_path / "a" / "clip.mp4"), _clip(tmp_path / "b" / "clip.mp4")  # one file name, two folders
    skeleton = sio.load_slp(str(trained_model.labels_path)).skeletons[0]
    labels = sio.Labels(videos=[sio.Video.from_filename(str(clip_a)), sio.Video.from_filename(str(clip_b))], skeletons=[skeleton])
    req = packaging.InferenceRequest(labels=labels, labels_filename=str(tmp_path / "p.slp"), model_dirs=[trained_model.run_dir],
                                     frames={0: [0, 1], 1: [2]})
    package = packaging.write_inference_package(req, tmp_path / "pkg")
    with zipfile.ZipFile(package.path) as zf:
        jobs = yaml.safe_load(zf.read("jobs.yaml"))
    names = [job["output_path"] for job in jobs["inference"]]
    assert len(set(names)) == 2 and all(SLEAP_NAME.match(n) for n in names), names
    assert [SLEAP_NAME.match(n)["source"] for n in names] == ["clip.mp4", "clip.mp4"]
    for name, video in zip(names, (0, 1)):
        assert packaging.predicted_videos(Path(name), req) == [video]
        clash = name.removesuffix(".predictions.slp") + "-1.predictions.slp"  # installed beside an earlier file
        assert packaging.predicted_videos(Path(clash), req) == [video]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_installed_results_leave_the_hidden_folder_and_the_rest_is_capped(tmp_path):
    state = tmp_path / ".sleap-rtc"
    cache = ContentCache(state / "cache", None)
    blobs = {name: bytes([i]) * (1000 * (i + 1)) for i, name in enumerate(["model", "old1", "old2", "old3"])}
    for name, data in blobs.items():
        src = tmp_path / name
        src.write_bytes(data)
        cache.put(src, _sha(data))
    incoming = state / "incoming" / "job1"
    incoming.mkdir(parents=True)
    (incoming / "left.zip").write_bytes(b"x" * 500)
    (state / "joblist").mkdir()
    (state / "joblist" / "job1.json").write_text("{}")
    freed = tidy_after_install(tmp_path, "job1", [_sha(blobs["model"])], max_bytes=5000)
    assert cache.path_of(_sha(blobs["model"])) is None  # installed in the project: its cached copy is gone
    assert not incoming.exists()
    assert cache.total_bytes() <= 5000 and cache.path_of(_sha(blobs["old3"])) is not None  # newest kept, oldest evicted
    assert (state / "joblist" / "job1.json").exists()  # what a later fetch needs stays
    assert freed >= 1000 + 500


async def test_a_real_remote_tracking_leaves_sleap_names_and_no_cached_copies(cpu_worker, trained_model, project, tmp_path):  # noqa: F811
    clip = _clip(tmp_path / "clip.mp4")
    skeleton = sio.load_slp(str(trained_model.labels_path)).skeletons[0]
    labels = sio.Labels(videos=[sio.Video.from_filename(str(clip))], skeletons=[skeleton])
    req = packaging.InferenceRequest(labels=labels, labels_filename=str(project / "clip.slp"), model_dirs=[trained_model.run_dir],
                                     frames={0: [0, 1, 2]})
    package = packaging.write_inference_package(req, tmp_path / "pkg")
    handle = submit_inference(package.path, spec_for(cpu_worker), project_dir=project, inputs=package.inputs)
    outcome = await handle.result()
    (predictions,) = outcome.prediction_files
    assert predictions.parent == project / "predictions"
    match = SLEAP_NAME.match(predictions.name)
    assert match and match["source"] == "clip.mp4", predictions.name
    assert packaging.predicted_videos(predictions, req) == [0]
    state = project / ".sleap-rtc"
    assert not (state / "incoming" / handle.job_id).exists()
    cached = [p.name for p in (state / "cache").iterdir() if len(p.name) == 64] if (state / "cache").exists() else []
    assert not cached, cached  # the job's only received files were installed: no copy of them is kept
