"""How responsive SLEAP's Qt loop stays while the plugin sends a training package.

The client runs as it does inside SLEAP: asyncio on the Qt event loop through qasync
(offscreen Qt). A 10 ms QTimer records how late each tick fires; the worst lateness
is the longest the UI froze. The worker is a real ``sleap-rtc worker`` subprocess
with its embedded coordinator, as on a lab machine. The package is ``--size-mb`` of
incompressible data (the worker refuses it after the transfer: only the transfer is
measured). Rows, in one run: the idle loop (baseline), the default paths (direct TLS
stream on loopback), and the WebRTC data channel alone (``transfer.direct = false``).

    python benchmarks/gui_responsiveness.py --size-mb 50 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SLEAP_RTC_ICE_LOOPBACK", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make_package(path: Path, size_mb: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("jobs.yaml", "training: []\ninference: []\n")
        with zf.open("payload.bin", "w", force_zip64=True) as out:
            for _ in range(size_mb):
                out.write(os.urandom(1 << 20))
    return path


class LagProbe:
    """A 10 ms Qt timer; ``lags`` holds how late each tick came, in ms."""

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.lags: list[float] = []
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lags.append(max(0.0, (now - self._last - self.interval) * 1000))
        self._last = now

    def start(self) -> None:
        self.lags.clear()
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        lags = sorted(self.lags)
        return {
            "ticks": len(lags),
            "worst_lag_ms": round(lags[-1], 1) if lags else None,
            "p99_lag_ms": round(lags[int(0.99 * (len(lags) - 1))], 1) if lags else None,
            "median_lag_ms": round(statistics.median(lags), 2) if lags else None,
        }


async def send_once(package: Path, session: str, project: Path, *, direct: bool) -> dict:
    from sleap_rtc_plugin.client.api import ConnectionSpec, JobHandle, RemoteError
    from sleap_rtc_plugin.config import load_settings

    settings = load_settings(None, env={**os.environ, "SLEAP_RTC_TRANSFER_DIRECT": "true" if direct else "false"})
    handle = JobHandle("train", ConnectionSpec(session_string=session, ice_loopback=True), project_dir=project,
                       package_path=package, settings=settings)
    via, started, finished = None, time.perf_counter(), None
    async for event in handle.events():
        if event.kind == "status" and event.data.get("state") == "transferred":
            via, finished = event.data.get("via"), time.perf_counter()
    try:
        await handle.result()
    except RemoteError:
        pass  # expected: the worker refuses the payload-only package
    seconds = (finished or time.perf_counter()) - started
    return {"via": via, "seconds": round(seconds, 2), "mb_per_s": round(package.stat().st_size / 1e6 / seconds, 1)}


async def scenario(args) -> list[dict]:
    from fixtures_e2e import WorkerProcess

    rows = []
    with tempfile.TemporaryDirectory(prefix="sleap-rtc-bench-") as tmp:
        tmp = Path(tmp)
        worker = WorkerProcess(tmp / "worker")
        try:
            probe = LagProbe()
            probe.start()
            await asyncio.sleep(args.idle_seconds)
            rows.append({"row": "idle Qt loop (baseline)", **probe.stop()})
            for name, direct in (("default paths", True), ("data channel only", False)):
                package = make_package(tmp / f"big-{direct}.slp.training_job.zip", args.size_mb)  # fresh bytes: no cache hit
                probe.start()
                result = await send_once(package, worker.session_string, tmp / f"project-{direct}", direct=direct)
                rows.append({"row": f"sending {args.size_mb} MB, {name}", **result, **probe.stop()})
        finally:
            worker.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import qasync
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        rows = loop.run_until_complete(scenario(args))
    baseline = rows[0]["worst_lag_ms"] or 0.0
    for row in rows[1:]:
        row["worst_lag_vs_idle_ms"] = round(row["worst_lag_ms"] - baseline, 1)
        row["under_100_ms"] = row["worst_lag_ms"] < 100
    report = {"benchmark": "gui_responsiveness", "size_mb": args.size_mb, "cpus": os.cpu_count(), "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for row in rows:
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
