"""Files a remote job leaves in the project (issue 20, item 9): predictions named as SLEAP
names them, and a hidden ``.sleap-rtc/`` folder that does not keep installed results."""

from __future__ import annotations

import asyncio
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


def test_the_inference_settings_sleap_shows_reach_sleap_nn_as_its_runner_passes_them(trained_model, tmp_path):  # noqa: F811
    """Peak threshold, batch size, max instances, the tracker and overlap filtering: the flags SLEAP's own
    ``InferenceTask`` would give sleap-nn, minus what the worker chooses (data, frames, models, output, device)."""
    from sleap.gui.learning.runners import InferenceTask

    from sleap_rtc_plugin.worker.package import open_package

    params = {"_peak_threshold": 0.05, "_batch_size": 4, "_max_instances": 2, "trainer_config.trainer_accelerator": "cuda",
              "tracking.tracker": "flow", "tracking.match": "greedy", "tracking.track_window": 7, "tracking.max_tracks": 3,
              "tracking.post_connect_single_breaks": 1, "tracking.robust": 0.9, "tracking.similarity": "iou",
              "filter_overlapping": True, "filter_overlapping_threshold": 0.6}
    clip = _clip(tmp_path / "clip.mp4")
    skeleton = sio.load_slp(str(trained_model.labels_path)).skeletons[0]
    labels = sio.Labels(videos=[sio.Video.from_filename(str(clip))], skeletons=[skeleton])
    req = packaging.InferenceRequest(labels=labels, labels_filename=str(tmp_path / "p.slp"), model_dirs=[trained_model.run_dir],
                                     frames={0: [0, 1]}, inference_params=params)
    package = packaging.write_inference_package(req, tmp_path / "pkg")
    with zipfile.ZipFile(package.path) as zf:
        extra = yaml.safe_load(zf.read("jobs.yaml"))["inference"][0]["extra_args"]

    class Item:
        cli_args = ["--data_path", "p.slp", "--video_index", "0", "--frames", "0,1"]

    sleaps, _ = InferenceTask(trained_job_paths=["models/m"], inference_params=params).make_predict_cli_call(Item(), output_path="out.slp")
    expected = [a for a in sleaps[3:] if a not in Item.cli_args + ["--model_paths", "models/m", "-o", "out.slp", "--device", "cuda"]]
    assert extra == [str(a) for a in expected] and {"--peak_threshold", "0.05", "--tracking", "--use_flow", "--max_tracks"} <= set(extra)
    spec = open_package(package.path, tmp_path / "job", inputs=package.inputs)  # the worker takes every one of them
    assert spec.inference[0].extra_args == extra


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
    # Off the event loop, as the Track dialog does: a blocked loop misses the test coordinator's 1.5 s heartbeats.
    package = await asyncio.to_thread(packaging.write_inference_package, req, tmp_path / "pkg")
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
