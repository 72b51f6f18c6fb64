"""One received package → one job: unpack, run sleap-nn, hand back result paths.

The networked worker (agent.py) speaks in jobs; the runner speaks in sleap-nn
processes. This adapter joins them so the agent never touches package layout or
process handling, and every failure reaches it as one :class:`JobFailedError`.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from .package import JobSpec, PackageError, open_package
from .private import private_dir
from .runner import InferenceJob, ProcessCancelled, ProcessFailed, TrainingJob, TrainingResult, hydra_value
from ..protocol.names import is_plain_file_name
from ..jobspec.archive import Limits
from .job_record import JOB_RECORD, write_job_record

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], Awaitable[None] | None]


#: How a full disk shows in sleap-nn's output (Python's OSError text, errno 28).
_NO_SPACE = re.compile(r"No space left on device|\[Errno %d\]|ENOSPC|disk quota exceeded" % errno.ENOSPC, re.IGNORECASE)


class JobFailedError(Exception):
    """The job cannot run or did not succeed; ``str()`` is one actionable line.

    ``own_error`` False means the worker failed, not the job (a full disk): a queued
    job is then retried elsewhere. ``code`` is a stable word for the refusal
    (``bad_package``, ``package_too_large``, ``disk_full``) when there is one.
    """

    def __init__(self, message: str, *, cancelled: bool = False, own_error: bool = True, code: str | None = None):
        super().__init__(message)
        self.cancelled = cancelled
        self.own_error = own_error
        self.code = code


def out_of_space(exc: ProcessFailed) -> bool:
    """True when sleap-nn died of a full disk: the worker's failure, not the job's."""
    return any(_NO_SPACE.search(line) for line in [str(exc), *exc.tail])


@dataclass
class JobOutput:
    run_dirs: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


class JobEngine:
    """Satisfies the status machine's ``RunningJob`` protocol (job_id, running, describe)."""

    def __init__(self, job_id: str, package_path: Path, job_dir: Path, *, kind: str, options: dict[str, Any] | None = None, cancel_grace: float = 10.0,
                 overrides: list[str] | None = None, model_overrides: dict[str, list[str]] | None = None,
                 inputs: dict[str, Path] | None = None, max_unpacked_bytes: int | None = None,
                 executor_factory: Callable[..., Any] | None = None, adopt_meta: dict[str, Any] | None = None):
        """``executor_factory``: where sleap-nn runs (None: a child process here; the Slurm
        executor's factory: one sbatch job per command, job dirs under its staging dir).
        ``adopt_meta``: who the job is for (client, owner hash), kept beside a Slurm job so a
        restarted worker can take it back (:mod:`.slurm.adopt`).
        ``overrides``/``model_overrides`` are extra sleap-nn Hydra overrides for training
        (all models / one model by head): queued jobs add ``save_last`` and resume paths.
        ``inputs``: files sent beside the package (videos), placed at ``inputs/<name>``.
        ``max_unpacked_bytes``: the package's unpack cap (``worker.max_unpacked_mb``)."""
        self.job_id = job_id
        self.package_path = Path(package_path)
        self.inputs = dict(inputs or {})
        self.limits = Limits(max_total_bytes=max_unpacked_bytes) if max_unpacked_bytes else Limits()
        self.executor_factory = executor_factory
        self.adopt_meta = dict(adopt_meta or {})
        self._executor: Any = None
        staging = getattr(executor_factory, "staging_dir", None)
        self.job_dir = Path(staging) / Path(job_dir).name if staging else Path(job_dir)
        self.kind = kind
        self.options = dict(options or {})
        self.cancel_grace = cancel_grace
        self.spec: JobSpec | None = None
        self.overrides = list(overrides or [])
        self.model_overrides = {k: list(v) for k, v in (model_overrides or {}).items()}
        #: head -> final-epoch checkpoint the model is finished from (:mod:`.finish`).
        self.finish_from: dict[str, Path] = {}
        self._job: TrainingJob | InferenceJob | None = None
        self._cancel_requested = False

    @property
    def output_dir(self) -> Path:
        """Where training writes its run dirs (and ``last.ckpt``)."""
        return self.job_dir / "models"

    @property
    def completed_epoch(self) -> int | None:
        return self._job.completed_epoch if isinstance(self._job, TrainingJob) else None

    @property
    def completed_epochs(self) -> dict[str, int]:
        """Last completed epoch per model head (a finished model keeps its final one)."""
        return dict(self._job.completed_epochs) if isinstance(self._job, TrainingJob) else {}

    def model_for_run_dir(self, run_dir: Path) -> str | None:
        """The head of the model a run dir belongs to (sleap-nn may append ``-1``)."""
        for model in self.spec.models if self.spec else []:
            if re.fullmatch(re.escape(model.run_name) + r"(-\d+)?", run_dir.name):
                return model.head
        return None

    @property
    def running(self) -> bool:
        return self._job is not None and self._job.running

    def describe(self) -> str:
        return self._job.describe() if self._job is not None else "preparing"

    async def prepare(self) -> JobSpec:
        """Validate and unpack the package; a bad package never reaches sleap-nn."""
        if self.job_dir.exists():
            await asyncio.to_thread(shutil.rmtree, self.job_dir)
        try:
            await asyncio.to_thread(private_dir, self.job_dir)
            spec = await asyncio.to_thread(functools.partial(open_package, self.package_path, self.job_dir / "package",
                                                             inputs=self.inputs, limits=self.limits))
        except PackageError as exc:
            await asyncio.to_thread(shutil.rmtree, self.job_dir, True)
            raise JobFailedError(f"package rejected ({exc.code}): {exc}", own_error=exc.own_error, code=exc.code) from None
        except OSError as exc:
            await asyncio.to_thread(shutil.rmtree, self.job_dir, True)
            if exc.errno == errno.ENOSPC:
                raise JobFailedError(f"worker disk is full ({exc.strerror}); try another worker", own_error=False, code="disk_full") from None
            raise JobFailedError(f"worker cannot set up the job dir: {exc.strerror or exc}", own_error=False) from None
        if spec.kind != self.kind:
            wanted = "a training package (with model configs)" if self.kind == "train" else "an inference package (with trained models)"
            await asyncio.to_thread(shutil.rmtree, self.job_dir, True)
            raise JobFailedError(f"this {self.kind} job needs {wanted}, but the package holds a {spec.kind} job")
        self.spec = spec
        return spec

    async def run(self, on_event: EventSink) -> JobOutput:
        assert self.spec is not None, "prepare() first"
        if self._cancel_requested:
            raise JobFailedError("cancelled before it started", cancelled=True)
        executor = None
        if self.executor_factory is not None:
            gpus = self.options.get("gpu_count")
            executor = self._executor = self.executor_factory(self.job_id, self.job_dir, gpus=gpus if isinstance(gpus, int) and 0 <= gpus <= 64 else None)
            await asyncio.to_thread(self._stage_resume_checkpoints)
            if self.adopt_meta:
                await asyncio.to_thread(write_job_record, self)
        if self.kind == "train":
            self._job = TrainingJob(self.job_id, self.spec, on_event=on_event, output_dir=self.output_dir, executor=executor,
                                    overrides=self.overrides, model_overrides=self.model_overrides, finish_from=self.finish_from)
        else:
            self._job = InferenceJob(self.job_id, self.spec, on_event=on_event, output_dir=self.job_dir / "predictions", executor=executor)
        if executor is not None:
            executor.on_status = self._job._emit
        try:
            result = await self._job.run()
            await self._forget_record()
        except ProcessCancelled as exc:
            if executor is not None and executor.detached:
                raise JobFailedError("the worker stopped following its Slurm job, which keeps running; a restarted worker adopts it",
                                     own_error=False, code="detached") from None
            if executor is not None:  # nothing of a cancelled job is kept on the cluster's shared filesystem
                await asyncio.to_thread(shutil.rmtree, self.job_dir, True)
            raise JobFailedError(str(exc) or "cancelled", cancelled=True) from None
        except ProcessFailed as exc:
            tail = " | ".join(line for line in exc.tail[-3:] if line.strip())
            await self._forget_record()
            if exc.infra:
                raise JobFailedError(f"{exc}" + (f" — last output: {tail}" if tail else ""), own_error=False, code="infrastructure") from None
            if out_of_space(exc):
                raise JobFailedError(f"worker disk is full: {exc}" + (f" — last output: {tail}" if tail else ""),
                                     own_error=False, code="disk_full") from None
            raise JobFailedError(f"{exc}" + (f" — last output: {tail}" if tail else "")) from None
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise JobFailedError(f"worker disk is full ({exc.strerror}) while running the job", own_error=False, code="disk_full") from None
        if isinstance(result, TrainingResult):
            return JobOutput(run_dirs=list(result.run_dirs))
        return JobOutput(files=list(result.predictions))

    def _stage_resume_checkpoints(self) -> None:
        """Compute nodes see the staging filesystem, not the worker's data dir where a relayed
        checkpoint arrived: copy each resume checkpoint into the job dir and point sleap-nn there."""
        prefix = "trainer_config.resume_ckpt_path="
        for head, overrides in self.model_overrides.items():
            for i, override in enumerate(overrides):
                raw = override[len(prefix):] if override.startswith(prefix) else ""
                path = Path(raw[1:-1].replace("\\${", "${") if raw[:1] in "\"'" else raw)
                if not raw or not path.is_file() or path.resolve().is_relative_to(self.job_dir.resolve()) or not is_plain_file_name(head):
                    continue
                dest = self.job_dir / "resume" / f"{head}.ckpt"
                dest.parent.mkdir(mode=0o700, exist_ok=True)
                shutil.copyfile(path, dest)
                overrides[i] = prefix + hydra_value(dest.resolve().as_posix())

    @property
    def outlives_worker(self) -> bool:
        """Its sleap-nn runs under a scheduler (Slurm), not as this worker's child."""
        return self.executor_factory is not None

    async def detach(self) -> None:
        """The worker is going away but the Slurm job is not: stop following it, keep its
        record so the next worker start adopts it (:mod:`.slurm.adopt`)."""
        if self._executor is not None:
            self._executor.detached = True
        if self._job is not None:
            await self._job.cancel(0)

    async def _forget_record(self) -> None:
        """Over (or cancelled): nothing for a restarted worker to adopt. A detached job keeps it."""
        if self._executor is not None and not getattr(self._executor, "detached", False):
            await asyncio.to_thread(lambda: (self.job_dir / "slurm" / JOB_RECORD).unlink(missing_ok=True))

    async def stop_early(self) -> None:
        if isinstance(self._job, TrainingJob):
            await self._job.stop_early()

    async def cancel(self, grace: float | None = None) -> None:
        self._cancel_requested = True
        if self._job is not None:
            await self._job.cancel(self.cancel_grace if grace is None else grace)
