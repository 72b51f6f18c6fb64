"""Session-scoped sample data: a tiny labeled dataset, job packages, a trained model.

Load with ``pytest_plugins = ["fixtures_data"]`` in ``tests/conftest.py``. The
expensive results are also memoised per process, so a test module that
imports these fixtures directly still trains the model only once.
Directories deliberately contain spaces: every path the worker handles must
survive them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sleap_rtc_plugin import sample_data

_MEMO: dict[str, object] = {}


@dataclass
class TrainedModel:
    """A real 2-epoch single-instance model and what its training emitted."""

    run_dir: Path
    job_dir: Path
    labels_path: Path
    events: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def run_async(coro):
    """Run ``coro`` on a fresh loop in another thread (safe inside any test's loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    if "root" not in _MEMO:
        _MEMO["root"] = tmp_path_factory.mktemp("sample data")
    return _MEMO["root"]


@pytest.fixture(scope="session")
def sample_labels(sample_root) -> Path:
    """A 20-frame, 64x64, 2-node ``.pkg.slp`` with embedded frames."""
    if "labels" not in _MEMO:
        _MEMO["labels"] = sample_data.make_labels(sample_root / "labels dir" / "blobs.pkg.slp")
    return _MEMO["labels"]


@pytest.fixture(scope="session")
def training_package(sample_labels, sample_root) -> Path:
    """SLEAP-style single-instance training job zip, 2 epochs on CPU."""
    if "train_pkg" not in _MEMO:
        _MEMO["train_pkg"] = sample_data.make_training_package(sample_labels, sample_root / "packages")
    return _MEMO["train_pkg"]


@pytest.fixture(scope="session")
def trained_model(training_package, sample_labels, sample_root) -> TrainedModel:
    """Train the single-instance package once with the real job runner."""
    if "trained" not in _MEMO:
        from sleap_rtc_plugin.worker.package import open_package
        from sleap_rtc_plugin.worker.runner import TrainingJob

        job_dir = sample_root / "trained job"
        spec = open_package(training_package, job_dir)
        events: list[dict] = []
        job = TrainingJob("trained-fixture", spec, on_event=events.append)
        t0 = time.monotonic()
        result = run_async(job.run())
        _MEMO["trained"] = TrainedModel(
            run_dir=result.run_dirs[0],
            job_dir=job_dir,
            labels_path=sample_labels,
            events=events,
            seconds=time.monotonic() - t0,
        )
    return _MEMO["trained"]


def failing_training_package(labels: Path, out: Path) -> Path:
    """A real package sleap-nn refuses at start (an optimizer it does not know)."""
    good = sample_data.make_training_package(labels, out / "good")
    bad = out / "bad" / good.name
    bad.parent.mkdir(parents=True)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "single_instance.yaml":
                data = data.replace(b"  optimizer:\n", b"  optimizer_name: SGD\n  optimizer:\n")
            dst.writestr(name, data)
    return bad
