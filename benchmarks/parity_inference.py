"""Inference half of ``benchmarks/parity.py``: SLEAP's "Run Inference" vs the client's "Track remotely".

Same model, same frames (every frame of the external video), alternating:

- ``local``: SLEAP's ``InferenceWorker.run`` (what "Run Inference" runs on its thread):
  ``sleap predict --gui --data_path labels.slp --video_index 0 --frames .. --model_paths ..``.
- ``remote``: the GUI's ``write_inference_package`` (the video travels beside the package,
  content-addressed) then ``client.api.submit_inference`` to the worker.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from parity_probe import ChildSampler, env_diff


def _dialog_params(labels_path: Path, labels) -> dict:
    """SLEAP's inference dialog's form data, as "Run Inference" reads it."""
    from sleap.gui.learning.dialog import LearningDialog

    dialog = LearningDialog("inference", str(labels_path), labels)
    params = dialog.pipeline_form_widget.get_form_data()
    params["_prediction_mode"] = dialog.frame_target_selector.get_selection().prediction_mode
    dialog.close()
    return params


def _local(labels_path: Path, labels, model_dir: Path, frames: list[int], params: dict) -> dict:
    from sleap.gui.learning import runners

    video = labels.videos[0]
    task = runners.InferenceTask(trained_job_paths=[str(model_dir)], inference_params=dict(params), labels=labels,
                                 labels_filename=str(labels_path))
    items = runners.ItemsForInference.from_video_frames_dict({video: frames}, len(frames), labels, labels_path=str(labels_path))
    worker = runners.InferenceWorker(task, items)
    outcome: dict = {}
    worker.finished.connect(lambda ok, n, total: outcome.update(ok=ok, n=n))
    lines: list[str] = []
    worker.logOutput.connect(lines.append)
    sampler = ChildSampler(parent=os.getpid(), marker=("predict",))
    with sampler:
        t0 = time.monotonic()
        worker.run()
        total = time.monotonic() - t0
    if not outcome.get("ok"):
        raise RuntimeError("local inference failed: " + " | ".join(lines[-5:]))
    argv = next((line for line in lines if line.startswith("Running: ")), "")
    return {"total_s": total, "child": sampler.summary(), "argv": argv.removeprefix("Running: "), "frames_predicted": outcome.get("n")}


def _remote(labels_path: Path, labels, model_dir: Path, frames: list[int], params: dict, worker, root: Path) -> dict:
    from sleap_rtc_plugin.client.api import ConnectionSpec, submit_inference
    from sleap_rtc_plugin.gui.packaging import InferenceRequest, write_inference_package

    t0 = time.monotonic()
    req = InferenceRequest(labels=labels, labels_filename=str(labels_path), model_dirs=[model_dir], frames={0: frames},
                           inference_params=dict(params))
    package = write_inference_package(req, root / "package")
    build_s = time.monotonic() - t0
    sampler = ChildSampler(parent=worker.proc.pid, marker=("sleap_nn.cli",))
    timeline: list = []

    async def go():
        handle = submit_inference(package.path, ConnectionSpec(session_string=worker.session_string, ice_loopback=True),
                                  project_dir=root / "project", inputs=package.inputs)
        async for ev in handle.events():
            timeline.append((time.monotonic(), ev.kind, ev.data.get("state") or ev.data.get("event")))
        return await handle.result()

    with sampler:
        t1 = time.monotonic()
        try:
            outcome = asyncio.run(go())
        except Exception as exc:
            raise RuntimeError(f"remote inference failed: {exc}\nworker output:\n" + "".join(worker.output[-40:])) from exc
        total = time.monotonic() - t1

    def first(kind, what=None):
        return next((t for t, k, w in timeline if k == kind and (what is None or w == what)), None)

    connected, sent = first("status", "connected"), first("status", "transferred")
    finished = first("status", "succeeded") or first("status", "receiving")
    done = next((t for t, k, _ in reversed(timeline) if k == "result"), t1 + total)
    progress = sum(1 for _, k, _ in timeline if k == "progress")
    start = sent or connected
    phases = {"package_build_s": build_s, "connect_s": connected - t1 if connected else None,
              "upload_s": sent - connected if sent and connected else None,
              "run_s": finished - start if finished and start else None,
              "results_return_s": done - finished if finished else None}
    return {"total_s": build_s + total, "phases": {k: v and round(v, 2) for k, v in phases.items()}, "child": sampler.summary(),
            "inputs": sorted(package.inputs), "predictions": str(outcome.predictions), "progress_events": progress}


def inference_section(args, root: Path, worker, model_dir: str | None, *, make_project, train_model, aggregate) -> dict:
    """``make_project(folder, frames, labeled)``, ``train_model(labels_path)`` and ``aggregate(pairs)`` come from ``parity.py``."""
    import sleap_io as sio

    root.mkdir(parents=True, exist_ok=True)
    labels_path = make_project(root / "project", args.frames, args.labeled)
    if model_dir is None:
        model_dir = str(train_model(labels_path))
    labels = sio.load_slp(str(labels_path))
    frames = list(range(len(labels.videos[0])))
    params = _dialog_params(labels_path, labels)
    pairs, last = [], None
    for i in range(args.repeats):
        local = _local(labels_path, labels, Path(model_dir), frames, params)
        remote = _remote(labels_path, labels, Path(model_dir), frames, params, worker, root / f"remote{i}")
        fixed = sum(v for k, v in remote["phases"].items() if k != "run_s" and v)
        limit = local["total_s"] * 1.05 + fixed
        pairs.append({"frames": len(frames), "local_total_s": round(local["total_s"], 2), "remote_total_s": round(remote["total_s"], 2),
                      "fixed_overhead_s": round(fixed, 2), "limit_s": round(limit, 2), "pass": remote["total_s"] <= limit,
                      "remote_phases": remote["phases"], "video_sent_beside_package": remote["inputs"],
                      "local_child_threads": local["child"].get("max_threads"), "remote_child_threads": remote["child"].get("max_threads"),
                      "local_child_cpu_s": local["child"].get("cpu_s"), "remote_child_cpu_s": remote["child"].get("cpu_s"),
                      "local_child_seen_s": local["child"].get("seen_s"), "remote_child_seen_s": remote["child"].get("seen_s")})
        last = (local, remote)
    local, remote = last
    return {"pairs": pairs, "all_pass": all(p["pass"] for p in pairs), "aggregate": aggregate(pairs), "local_argv": local["argv"],
            "remote_argv": " ".join(remote["child"].get("argv", [])),
            "child_env_differences": env_diff(local["child"].get("environ"), remote["child"].get("environ"))}
