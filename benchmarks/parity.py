"""Remote vs local parity: the same SLEAP training package trained by SLEAP's own runner and by a worker.

    python benchmarks/parity.py [--repeats 1] [--epochs 2] [--steps 20] [--what train|inference|both] [--json]

Setup (once): a labels file on an EXTERNAL ``.mp4`` (sleap-io), SLEAP's real
``LearningDialog`` built offscreen (single-animal pipeline, SLEAP's defaults, then
``max_epochs``/``min_train_steps_per_epoch``/CPU), and a ``sleap-rtc worker``
subprocess with its embedded coordinator on loopback (its start time is reported,
not charged to any run: a worker is always on).

Training, alternating local/remote ``--repeats`` times:

- ``local``: ``sleap.gui.learning.runners.run_gui_training(gui=False)`` -- SLEAP's own
  code path ("Run Training"): ``sys.executable -m sleap.cli train --config-name ..``,
  inherited env/cwd/stdout; this process binds the ZMQ ports as SLEAP's LossViewer does.
- ``remote``: the GUI's package build (``gui.packaging.write_training_package``, i.e.
  SLEAP's ``write_pipeline_files``) then ``client.api.submit_training`` to the worker.

While each child runs, ``/proc`` is sampled: its argv, environment, niceness, CPU
affinity, peak OS threads and CPU seconds; ``torch.get_num_threads()`` is read by an
interpreter started with the child's exact environment, flags, affinity and niceness.
The effective config is the ``training_config.yaml`` sleap-nn saved in the run dir; the
epoch times are its ``training_log.csv`` (``train/time`` + ``val/time``).

``fixed_overhead_s`` = package build + connect + upload + results return;
``pass`` = ``remote_total_s <= local_total_s * 1.05 + fixed_overhead_s`` per pair.

Inference (``--what inference|both``): SLEAP's ``InferenceTask.predict_subprocess`` on
all frames of the video vs the client's ``submit_inference`` of the GUI's inference
package (``write_inference_package``: the video travels beside it), same model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SLEAP_SKIP_QT_FIX", "1")
os.environ["SLEAP_RTC_ICE_LOOPBACK"] = "1"  # set here, not for the worker alone: both children inherit it

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_probe import ChildSampler, config_summary, cpu_seconds, diff_config, env_diff, epoch_times, torch_threads  # noqa: E402


def make_project(folder: Path, n_frames: int, labeled: int) -> Path:
    """``folder/labels.slp`` whose video is ``folder/clip.mp4`` (not embedded), as most users have it."""
    from sleap_rtc_plugin.sample_data import make_video_labels

    return make_video_labels(folder, n_frames=n_frames, labeled=labeled, name="clip")[0]


class Dialog:
    """SLEAP's training dialog, offscreen; ``request()`` reads it the way the plugin does."""

    def __init__(self, labels_path: Path, epochs: int, steps: int):
        import sleap_io as sio
        from qtpy.QtWidgets import QApplication
        from sleap.gui.learning.dialog import LearningDialog

        self.app = QApplication.instance() or QApplication([])
        self.labels_path = labels_path
        self.labels = sio.load_slp(str(labels_path))
        self.dialog = LearningDialog("training", str(labels_path), self.labels)
        self.dialog.pipeline_form_widget.current_pipeline = "single"
        self.epochs, self.steps = epochs, steps

    def request(self):
        """A fresh request (SLEAP's runners mutate the configs they are handed)."""
        from sleap_rtc_plugin.gui import packaging

        req = packaging.collect_training_request(self.dialog)
        for info in req.config_info_list:
            tc = info.config.trainer_config
            tc.max_epochs, tc.min_train_steps_per_epoch, tc.trainer_accelerator = self.epochs, self.steps, "cpu"
            tc.early_stopping.stop_training_on_plateau = False
        return req


def _zmq_listener(events: list, stop: threading.Event) -> tuple[int, int]:
    """Bind SUB/PUB on free ports as SLEAP's LossViewer does; record sleap-nn's events with arrival times."""
    import zmq

    ctx = zmq.Context.instance()
    sub, pub = ctx.socket(zmq.SUB), ctx.socket(zmq.PUB)
    sub.setsockopt_string(zmq.SUBSCRIBE, "")
    publish_port = sub.bind_to_random_port("tcp://127.0.0.1")
    controller_port = pub.bind_to_random_port("tcp://127.0.0.1")

    def loop():
        while not stop.is_set():
            if sub.poll(100):
                msg = json.loads(sub.recv_string())
                if msg.get("event") != "batch_start":
                    events.append((time.monotonic(), msg.get("event"), msg.get("epoch")))
        sub.close(0)
        pub.close(0)

    threading.Thread(target=loop, daemon=True).start()
    return publish_port, controller_port


def run_local_training(dialog: Dialog, log_path: Path) -> dict:
    from sleap.gui.learning import runners

    req = dialog.request()
    events: list = []
    stop = threading.Event()
    publish_port, controller_port = _zmq_listener(events, stop)
    params = dict(req.inference_params, publish_port=publish_port, controller_port=controller_port)
    sampler = ChildSampler(parent=os.getpid(), marker=("sleap.cli", "train"))
    saved = os.dup(1), os.dup(2)
    with open(log_path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with sampler:
                t0 = time.monotonic()
                paths = runners.run_gui_training(str(dialog.labels_path), req.labels, req.config_info_list, params, gui=False)
                total = time.monotonic() - t0
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    time.sleep(0.3)
    stop.set()
    run_dir = Path(next(iter(paths.values())))
    return {"total_s": total, "t0": t0, "events": events, "run_dir": run_dir, "child": sampler.summary(),
            "log_lines": sum(1 for _ in open(log_path, "rb"))}


class WorkerProcess:
    """``sleap-rtc worker`` as a user starts it (embedded coordinator, loopback ICE)."""

    def __init__(self, data_dir: Path):
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sleap_rtc_plugin", "worker", "--port", "0", "--status-port", "0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        )
        self.output: list[str] = []
        self.session_string = None
        for line in self.proc.stdout:
            self.output.append(line)
            text = line.strip()
            if "--session-string" in text and "sleap-session:" in text:
                self.session_string = text.split("--session-string", 1)[1].split()[0]
            elif text.startswith("session file:"):
                self.session_string = Path(text.split(":", 1)[1].strip()).read_text().strip()
            if self.session_string:
                break
        if not self.session_string:
            self.proc.kill()
            raise RuntimeError("worker did not start:\n" + "".join(self.output))
        self.start_s = time.monotonic() - t0
        threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _follow(handle) -> tuple[list, object]:
    timeline: list = []
    async for ev in handle.events():
        d = ev.data
        timeline.append((time.monotonic(), ev.kind, d.get("state") or d.get("event"), d.get("epoch")))
    return timeline, await handle.result()


def run_remote_training(dialog: Dialog, worker: WorkerProcess, root: Path) -> dict:
    from sleap_rtc_plugin.client.api import ConnectionSpec, submit_training
    from sleap_rtc_plugin.gui import packaging

    req = dialog.request()
    t0 = time.monotonic()
    package = packaging.write_training_package(req, root / "package")
    build_s = time.monotonic() - t0
    sampler = ChildSampler(parent=worker.proc.pid, marker=("sleap_nn.cli", "train"))

    async def go():
        handle = submit_training(package, ConnectionSpec(session_string=worker.session_string, ice_loopback=True), project_dir=root / "project")
        return await _follow(handle)

    with sampler:
        t1, worker_cpu, own_cpu = time.monotonic(), cpu_seconds(worker.proc.pid), time.process_time()
        try:
            timeline, outcome = asyncio.run(go())
        except Exception as exc:
            raise RuntimeError(f"remote training failed: {exc}\nworker output:\n" + "".join(worker.output[-40:])) from exc
        total = time.monotonic() - t1
        worker_cpu, own_cpu = cpu_seconds(worker.proc.pid) - worker_cpu, time.process_time() - own_cpu
    run_dir = Path(outcome.model_dirs[0])
    return {"total_s": build_s + total, "build_s": build_s, "t0": t1, "timeline": timeline, "run_dir": run_dir,
            "child": sampler.summary(), "package_mb": package.stat().st_size / 1e6,
            "worker_process_cpu_s": round(worker_cpu, 2), "client_process_cpu_s": round(own_cpu, 2),
            "progress_events": sum(1 for _, kind, *_ in timeline if kind == "progress"),
            "log_lines": sum(1 for _, kind, *_ in timeline if kind == "log")}


def _first(timeline: list, kind: str, what: str | None = None) -> float | None:
    return next((t for t, k, w, _ in timeline if k == kind and (what is None or w == what)), None)


def _last(timeline: list, kind: str, what: str | None = None) -> float | None:
    return next((t for t, k, w, _ in reversed(timeline) if k == kind and (what is None or w == what)), None)


def phases_local(r: dict) -> dict:
    ev = r["events"]
    begin = next((t for t, e, _ in ev if e == "train_begin"), None)
    end = next((t for t, e, _ in reversed(ev) if e == "train_end"), None)
    return {"start_to_train_begin_s": begin - r["t0"] if begin else None,
            "train_begin_to_end_s": end - begin if begin and end else None,
            "train_end_to_done_s": r["t0"] + r["total_s"] - end if end else None}


def phases_remote(r: dict) -> dict:
    tl, t0 = r["timeline"], r["t0"]
    connected = _first(tl, "status", "connected")
    sending, sent = _first(tl, "status", "transferring"), _first(tl, "status", "transferred")
    begin, end = _first(tl, "progress", "train_begin"), _last(tl, "progress", "train_end")
    model_end = _last(tl, "progress", "model_end")
    done = _last(tl, "result") or (t0 + r["total_s"] - r["build_s"])
    sent = sent or connected
    return {"package_build_s": r["build_s"],
            "connect_s": (connected - t0) if connected else None,
            "upload_s": (sent - (sending or connected)) if sent and connected else None,
            "start_to_train_begin_s": (begin - sent) if begin and sent else None,
            "train_begin_to_end_s": (end - begin) if begin and end else None,
            "train_end_to_exit_s": (model_end - end) if end and model_end else None,
            "results_return_s": (done - (model_end or end)) if end else None}


def zmq_epochs(events: list) -> list[float]:
    """Seconds from each ``epoch_begin`` to its ``epoch_end`` as the progress events arrived."""
    begins = {n: t for t, e, n in events if e == "epoch_begin"}
    return [round(t - begins[n], 2) for t, e, n in events if e == "epoch_end" and n in begins]


def summarize(local: dict, remote: dict) -> dict:
    pl, pr = phases_local(local), phases_remote(remote)
    fixed = sum(v for k, v in pr.items() if k in ("package_build_s", "connect_s", "upload_s", "results_return_s") and v)
    limit = local["total_s"] * 1.05 + fixed
    cfg_l, cfg_r = config_summary(local["run_dir"]), config_summary(remote["run_dir"])
    return {
        "local_total_s": round(local["total_s"], 2),
        "remote_total_s": round(remote["total_s"], 2),
        "fixed_overhead_s": round(fixed, 2),
        "limit_s": round(limit, 2),
        "pass": remote["total_s"] <= limit,
        "remote_minus_fixed_over_local": round((remote["total_s"] - fixed) / local["total_s"], 3),
        "child_cpu_s": {"local": local["child"].get("cpu_s"), "remote": remote["child"].get("cpu_s")},
        "local_phases": {k: v and round(v, 2) for k, v in pl.items()},
        "remote_phases": {k: v and round(v, 2) for k, v in pr.items()},
        "local_epoch_s": zmq_epochs([(t, e, n) for t, e, n in local["events"]]),
        "remote_epoch_s": zmq_epochs([(t, w, n) for t, k, w, n in remote["timeline"] if k == "progress"]),
        "local_training_log_csv_time_s": epoch_times(local["run_dir"]),
        "remote_training_log_csv_time_s": epoch_times(remote["run_dir"]),
        "local_config": cfg_l,
        "remote_config": cfg_r,
        "config_differences": diff_config(local["run_dir"], remote["run_dir"]),
        "local_child": local["child"],
        "remote_child": remote["child"],
        "log_lines": {"local": local["log_lines"], "remote_relayed": remote["log_lines"]},
        "remote_progress_events_relayed": remote["progress_events"],
        "remote_worker_process_cpu_s": remote["worker_process_cpu_s"],
        "remote_client_process_cpu_s": remote["client_process_cpu_s"],
        "package_mb": round(remote["package_mb"], 3),
    }


def aggregate(pairs: list[dict]) -> dict:
    """The verdict over all pairs: sums, and the median of (remote − fixed) / local.

    A job of a few tens of seconds varies by ±20 % run to run on a small machine, in
    either side; one pair's verdict is then a coin toss, the sum over alternating pairs
    is not."""
    local = sum(p["local_total_s"] for p in pairs)
    remote = sum(p["remote_total_s"] for p in pairs)
    fixed = sum(p["fixed_overhead_s"] for p in pairs)
    ratios = sorted((p["remote_total_s"] - p["fixed_overhead_s"]) / p["local_total_s"] for p in pairs)
    mid = len(ratios) // 2
    median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    return {"local_s": round(local, 2), "remote_s": round(remote, 2), "fixed_overhead_s": round(fixed, 2),
            "limit_s": round(local * 1.05 + fixed, 2), "pass": remote <= local * 1.05 + fixed,
            "median_remote_minus_fixed_over_local": round(median, 3)}


def train_section(args, root: Path, worker: WorkerProcess) -> dict:
    labels = make_project(root / "project", args.frames, args.labeled)
    dialog = Dialog(labels, args.epochs, args.steps)
    pairs, last = [], None
    for i in range(args.repeats):
        local = run_local_training(dialog, root / f"local{i}.log")
        remote = run_remote_training(dialog, worker, root / f"remote{i}")
        pairs.append(summarize(local, remote))
        last = (local, remote)
    local, remote = last
    out = {"pairs": pairs, "all_pass": all(p["pass"] for p in pairs), "aggregate": aggregate(pairs),
           "child_env_differences": env_diff(local["child"].get("environ"), remote["child"].get("environ"))}
    out["torch_threads"] = {"local": torch_threads(local["child"]), "remote": torch_threads(remote["child"])}
    for p in pairs:
        p["local_child"].pop("environ", None)
        p["remote_child"].pop("environ", None)
    out["model_dir"] = str(remote["run_dir"])
    return out


def _section(fn, *args, **kw) -> dict:
    """One section's figures, or its error: a failing section never loses the other's."""
    try:
        return fn(*args, **kw)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON
        return {"error": f"{type(exc).__name__}: {exc}"[-3000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="local/remote pairs, alternating (default 1)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per run (default 2)")
    parser.add_argument("--steps", type=int, default=10, help="min_train_steps_per_epoch (default 10; SLEAP's default is 200)")
    parser.add_argument("--frames", type=int, default=40, help="frames in the generated video (default 40)")
    parser.add_argument("--labeled", type=int, default=20, help="user-labeled frames (default 20)")
    parser.add_argument("--what", choices=("train", "inference", "both"), default="both", help="which sections to run (default both)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder, removed)")
    parser.add_argument("--json", action="store_true", help="print one JSON line (default: indented JSON)")
    args = parser.parse_args()
    if args.repeats < 1 or args.epochs < 1:
        parser.error("--repeats and --epochs must be at least 1")
    logging.disable(logging.INFO)
    # SLEAP's "Run Inference" runs the ``sleap`` script from PATH: the activated environment's.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="sleap-rtc-parity-")
    root = Path(args.keep or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    worker = WorkerProcess(root / "worker-data")
    result: dict = {"benchmark": "parity", "epochs": args.epochs, "steps": args.steps, "repeats": args.repeats,
                    "worker_start_s": round(worker.start_s, 2)}
    try:
        if args.what in ("train", "both"):
            result["training"] = _section(train_section, args, root / "train", worker)
        if args.what in ("inference", "both"):
            from parity_inference import inference_section

            def train_model(labels_path: Path) -> Path:
                return run_local_training(Dialog(labels_path, 1, args.steps), root / "model.log")["run_dir"]

            result["inference"] = _section(inference_section, args, root / "infer", worker, result.get("training", {}).get("model_dir"),
                                           make_project=make_project, train_model=train_model, aggregate=aggregate)
    finally:
        worker.stop()
        if tmp is not None:
            tmp.cleanup()
    result.update({"loadavg_1m_before": round(load_before[0], 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
                   "cpu_count": os.cpu_count(), "python": sys.version.split()[0]})
    print(json.dumps(result, default=str) if args.json else json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
