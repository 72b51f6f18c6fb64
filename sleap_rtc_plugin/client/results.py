"""Put a remote job's results where SLEAP looks for local ones.

Models go to ``<project>/models/<run_name>/`` (SLEAP's inference dialog lists that
folder), predictions to ``<project>/predictions/``. An existing run dir is never
overwritten: like sleap-nn, a clash gets a ``-1``, ``-2``… suffix. Extraction is
atomic per model (staging dir, then rename), so a half-written model never appears.
"""

from __future__ import annotations

import errno
import logging
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..jobspec.refusals import DISK_FULL, PackageError
from ..jobspec.archive import Limits, check_zip, extract
from .model_paths import localize_model

if TYPE_CHECKING:
    from ..protocol.peer import ResultFile
    from .outcome import JobOutcome

log = logging.getLogger(__name__)
#: A worker keeps 64 MB spare for its jobs; in a project the announced sizes were checked already.
_LIMITS = Limits(min_free_margin=0)


def _free_name(parent: Path, name: str) -> Path:
    target = parent / name
    n = 0
    while target.exists():
        n += 1
        target = parent / f"{name}-{n}"
    return target


def install_model(zip_path: Path, models_dir: Path) -> Path:
    """Extract one model zip (a single top-level run dir) into ``models_dir``."""
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f".incoming-{zip_path.stem}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            extract(zf, check_zip(zf), staging, _LIMITS)
    except PackageError as exc:
        if exc.code == DISK_FULL:  # the client's disk, whatever the worker-side wording says
            raise OSError(errno.ENOSPC, f"no space to unpack {zip_path.name} in {models_dir}") from None
        raise
    tops = [p for p in staging.iterdir()]
    run_dir = tops[0] if len(tops) == 1 and tops[0].is_dir() else staging
    target = _free_name(models_dir, run_dir.name if run_dir is not staging else zip_path.stem)
    run_dir.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _relink(path: Path, local_files: dict[str, Path]) -> None:
    """Point a returned labels file at the user's videos; a failure keeps the file as received."""
    from .relink import relink_videos

    try:
        relink_videos(path, local_files)
    except Exception as exc:  # sleap-io raises many types; the result itself must not be lost
        log.warning("%s: could not re-point its videos at local files (%s); it still references the worker's paths", path.name, exc)


def install_results(received: list[tuple["ResultFile", Path]], project_dir: Path, job_id: str, kind: str, worker_id: str,
                    local_files: dict[str, Path] | None = None) -> "JobOutcome":
    """Install each result; every returned ``.slp`` is re-pointed at local videos
    (``local_files``: name in the package -> the user's file it was sent from)."""
    from .outcome import JobOutcome

    outcome = JobOutcome(job_id=job_id, kind=kind, worker_id=worker_id)  # type: ignore[arg-type]
    for meta, path in received:
        if meta.role == "model":
            run_dir = install_model(path, project_dir / "models")
            localize_model(run_dir, project_dir)
            for slp in sorted(run_dir.rglob("*.slp")):
                _relink(slp, local_files or {})
            outcome.model_dirs.append(run_dir)
            outcome.files.append(run_dir)
            path.unlink(missing_ok=True)
        elif meta.role == "predictions":
            target = project_dir / "predictions" / path.name
            suffix = ".predictions.slp" if path.name.endswith(".predictions.slp") else ".slp"
            n = 0
            while target.exists():  # "<video>.<timestamp>-1.predictions.slp": still SLEAP's pattern
                n += 1
                target = target.with_name(f"{path.name.removesuffix(suffix)}-{n}{suffix}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), target)
            _relink(target, local_files or {})
            outcome.predictions = outcome.predictions or target
            outcome.prediction_files.append(target)
            outcome.files.append(target)
        else:
            target = project_dir / ".sleap-rtc" / "jobs" / job_id / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), target)
            outcome.files.append(target)
        log.info("job %s: installed %s", job_id, outcome.files[-1])
    return outcome
