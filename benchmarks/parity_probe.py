"""What the parity benchmark reads about a running sleap-nn child and the run it leaves behind.

Linux only (``/proc``): argv, environment, cwd, niceness, CPU affinity, peak OS threads
and CPU seconds of the child; ``torch.get_num_threads()`` as that child sees it; the
effective config sleap-nn saved (``training_config.yaml``) and its ``training_log.csv``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import threading
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")

#: Keys that name where a run lives or how it reports, not how it trains.
_WHERE_KEYS = (
    "trainer_config.ckpt_dir", "trainer_config.run_name", "data_config.train_labels_path", "data_config.val_labels_path",
    "trainer_config.zmq.publish_port", "trainer_config.zmq.controller_port", "trainer_config.wandb.", "filename",
    "data_config.skeletons", "sleap_nn_version", "data_config.litdata_chunks_path", "trainer_config.resume_ckpt_path",
    "model_config.total_params", "name", "description",
)


def _read(path: str, mode: str = "r"):
    try:
        with open(path, mode) as fh:
            return fh.read()
    except OSError:
        return None


class ChildSampler:
    """Watch, every 0.2 s, the children of ``parent`` whose argv contains all of ``marker``."""

    def __init__(self, parent: int, marker: tuple[str, ...]):
        self.parent, self.marker = parent, marker
        self.seen: dict[int, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
                self._sample(pid)

    def _sample(self, pid: int) -> None:
        stat = _read(f"/proc/{pid}/stat")
        if not stat:
            return
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) != self.parent:
            return
        raw = _read(f"/proc/{pid}/cmdline", "rb")
        argv = [a.decode(errors="replace") for a in (raw or b"").split(b"\0") if a]
        if not all(any(m in a for a in argv) for m in self.marker):
            return
        status = _read(f"/proc/{pid}/status") or ""
        info = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rec = self.seen.setdefault(pid, {"argv": argv, "first_seen": time.monotonic(), "max_threads": 0})
        if "environ" not in rec:
            env_raw = _read(f"/proc/{pid}/environ", "rb") or b""
            rec["environ"] = dict(e.decode(errors="replace").split("=", 1) for e in env_raw.split(b"\0") if b"=" in e)
            try:
                rec["cwd"] = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                rec["cwd"] = None
            rec["nice"] = int(fields[16])
            rec["cpus_allowed"] = info.get("Cpus_allowed_list", "").strip()
            rec["session_leader"] = int(fields[3]) == pid
            rec["autogroup"] = (_read(f"/proc/{pid}/autogroup") or "").split(",")[0].strip()
        rec["argv"] = argv
        rec["max_threads"] = max(rec["max_threads"], int(info.get("Threads", "0") or 0))
        rec["cpu_s"] = round((int(fields[11]) + int(fields[12])) / _TICK, 2)
        rec["last_seen"] = time.monotonic()

    def summary(self) -> dict:
        """The longest-lived matching child (the trainer), or {} if none was seen."""
        if not self.seen:
            return {}
        rec = max(self.seen.values(), key=lambda r: r.get("last_seen", 0) - r["first_seen"])
        out = {k: v for k, v in rec.items() if k not in ("first_seen", "last_seen")}
        out["seen_s"] = round(rec.get("last_seen", rec["first_seen"]) - rec["first_seen"], 2)
        return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far (0 if it is gone)."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def torch_threads(child: dict) -> dict | None:
    """``torch.get_num_threads()``/interop threads in an interpreter started like ``child``
    (same executable, interpreter flags, environment, cwd, niceness and CPU affinity)."""
    if not child or "environ" not in child:
        return None
    argv = child["argv"]
    flags = argv[1:argv.index("-m")] if "-m" in argv else []
    cpus = _cpu_list(child.get("cpus_allowed", ""))
    nice = child.get("nice", 0)

    def prepare():
        os.nice(max(0, nice - os.nice(0)))
        if cpus:
            os.sched_setaffinity(0, cpus)

    code = "import json, torch; print(json.dumps([torch.get_num_threads(), torch.get_num_interop_threads()]))"
    cwd = child.get("cwd")
    try:
        out = subprocess.run([argv[0], *flags, "-c", code], env=child["environ"], cwd=cwd if cwd and os.path.isdir(cwd) else None,
                             preexec_fn=prepare, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    try:
        intra, interop = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": out.stderr.strip()[-300:]}
    return {"torch_num_threads": intra, "torch_interop_threads": interop}


def _cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def env_diff(local: dict | None, remote: dict | None) -> dict:
    """Variables the remote child has that the local one lacks, lacks, or has with another value."""
    if local is None or remote is None:
        return {"error": "a child was not sampled"}
    return {
        "added": {k: remote[k][:120] for k in sorted(set(remote) - set(local))},
        "removed": sorted(set(local) - set(remote)),
        "changed": {k: [local[k][:120], remote[k][:120]] for k in sorted(set(local) & set(remote)) if local[k] != remote[k]},
    }


def _flat(d, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _config(run_dir: Path) -> dict:
    import yaml

    path = Path(run_dir) / "training_config.yaml"
    return _flat(yaml.safe_load(path.read_text())) if path.is_file() else {}


def config_summary(run_dir: Path) -> dict:
    """The effective settings that decide training speed, as sleap-nn saved them."""
    cfg = _config(run_dir)
    keys = ("trainer_config.train_data_loader.batch_size", "trainer_config.train_data_loader.num_workers",
            "trainer_config.min_train_steps_per_epoch", "trainer_config.train_steps_per_epoch", "trainer_config.max_epochs",
            "trainer_config.trainer_accelerator", "trainer_config.trainer_devices", "trainer_config.trainer_strategy",
            "trainer_config.precision", "trainer_config.save_ckpt", "trainer_config.model_ckpt.save_last",
            "trainer_config.enable_progress_bar", "trainer_config.visualize_preds_during_training",
            "data_config.data_pipeline_fw", "model_config.backbone_config.unet.filters")
    return {k.rsplit(".", 1)[-1] if k.count(".") > 1 else k: cfg.get(k) for k in keys if k in cfg}


def diff_config(local_dir: Path, remote_dir: Path) -> dict:
    """Every effective-config key that differs, minus where the run lives and how it reports."""
    a, b = _config(local_dir), _config(remote_dir)
    keys = sorted(set(a) | set(b))
    return {k: [a.get(k), b.get(k)] for k in keys
            if a.get(k) != b.get(k) and not any(k == w or (w.endswith(".") and k.startswith(w)) for w in _WHERE_KEYS)}


def epoch_times(run_dir: Path) -> list[float]:
    """``train/time + val/time`` per epoch from sleap-nn's ``training_log.csv``."""
    path = Path(run_dir) / "training_log.csv"
    if not path.is_file():
        return []
    out = []
    with path.open() as fh:
        for row in csv.DictReader(fh):
            try:
                out.append(round(float(row.get("train/time") or 0) + float(row.get("val/time") or 0), 2))
            except ValueError:
                continue
    return out
