"""Run real ``sleap-nn`` training and inference as subprocesses, asynchronously.

Why subprocesses: training must be stoppable (Stop Early keeps ``best.ckpt``)
and killable (cancel) without taking the worker service down, and a crash in
torch must cost one job, not the worker.

Progress comes the way SLEAP's own LossViewer gets it: the runner **binds** a
SUB socket (sleap-nn's ``publish_port``) and a PUB socket (its
``controller_port``) on 127.0.0.1 ports the OS picks, and sleap-nn connects to
both. Stop Early is ``{"command": "stop"}`` on the controller socket.

Where the process runs is an :class:`~.executor.Executor`'s business (a local child
process, or a Slurm job). The interpreter runs with ``-P`` / ``PYTHONSAFEPATH`` so a
file in the job dir (which came from a remote client) can never shadow ``torch``.

Events are plain dicts handed to ``on_event`` as they happen:

* ``{"kind": "progress", "model", "model_index", "n_models", "what", "event", "logs", ...}``
  — sleap-nn's own ZMQ message (``train_begin``, ``epoch_begin``, ``batch_end``,
  ``epoch_end``, ``train_end``) with the model it belongs to; ``batch_start`` is dropped.
* ``{"kind": "log", "stream": "stdout"|"stderr", "line", "model"}``
* ``{"kind": "job", "event": "model_begin"|"model_end", "model", "model_index", "n_models", "run_dir"}``
* ``{"kind": "inference_progress", "n_processed", "n_total", "rate", "eta"}``
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from sleap_rtc_plugin.protocol.names import is_plain_file_name
from sleap_rtc_plugin.worker.package import InferenceSpec, JobSpec, ModelSpec
from sleap_rtc_plugin.worker.finish import complete_run_dir
from sleap_rtc_plugin.jobspec.refusals import PackageError
from sleap_rtc_plugin.worker.child_env import sleap_nn_argv
from sleap_rtc_plugin.worker.executor import Executor
from sleap_rtc_plugin.worker.jobproc import EventCallback, ProcessCancelled, ProcessFailed, _Job

__all__ = ["EventCallback", "InferenceJob", "InferenceResult", "ProcessCancelled", "ProcessFailed", "TrainingJob", "TrainingResult", "hydra_value"]
from sleap_rtc_plugin.jobspec.sleapnn_args import check_argv_paths, check_device, check_extra_args, frame_ranges, inside

logger = logging.getLogger(__name__)

_CKPT_DIR_LINE = re.compile(r"Setting up model ckpt dir: `(.+)`")


@dataclass
class TrainingResult:
    job_id: str
    run_dirs: list[Path]
    stopped_early: list[str] = field(default_factory=list)
    duration_s: float = 0.0


@dataclass
class InferenceResult:
    job_id: str
    predictions: list[Path]
    duration_s: float = 0.0


def hydra_value(value: str) -> str:
    """Quote ``value`` for a Hydra override so spaces, ``=`` and commas survive.

    Hydra re-parses override values; a path like ``/data/my runs/x.n=20`` must be
    quoted, and ``${`` escaped so OmegaConf does not treat it as interpolation.
    """
    value = value.replace("${", "\\${")
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise ProcessFailed(f"path {value!r} contains both quote characters; rename it")


def checked_paths(root: Path, what: str, *paths: Path | str) -> None:
    """Raise :class:`ProcessFailed` unless every path resolves under ``root`` (the last lock before sleap-nn runs)."""
    try:
        check_argv_paths(paths, root, what)
    except PackageError as exc:
        raise ProcessFailed(str(exc)) from None


class TrainingJob(_Job):
    """Train each model of a :class:`JobSpec` in order with ``sleap-nn train``.

    ``overrides`` are extra Hydra ``key=value`` overrides applied to every model
    (e.g. ``trainer_config.trainer_accelerator=gpu``); they are passed with ``++``
    so keys absent from the yaml are added rather than rejected. ``model_overrides``
    maps a model's head to overrides for that model only (a queued job resumes one
    model from a relayed checkpoint with ``trainer_config.resume_ckpt_path``).
    ``finish_from`` maps a head to a final-epoch checkpoint it resumes from: with no
    epoch left sleap-nn writes no ``best.ckpt``, and the model is finished from the
    checkpoint instead (:mod:`.finish`).
    """

    def __init__(
        self,
        job_id: str,
        spec: JobSpec,
        *,
        on_event: EventCallback | None = None,
        python: str | None = None,
        overrides: Sequence[str] = (),
        model_overrides: Mapping[str, Sequence[str]] | None = None,
        env: dict[str, str] | None = None,
        output_dir: str | Path | None = None,
        finish_from: dict[str, Path] | None = None,
        executor: Executor | None = None,
    ):
        super().__init__(job_id, on_event=on_event, python=python, env=env, executor=executor)
        self._finish_from = dict(finish_from or {})
        if not spec.models:
            raise ValueError("TrainingJob needs a spec with at least one model")
        self.spec = spec
        self.output_dir = Path(output_dir) if output_dir else spec.root / "models"
        self._overrides = list(overrides)
        self._model_overrides = {head: list(o) for head, o in (model_overrides or {}).items()}
        self._stop_requested = False
        self._stop_sent_at = 0.0
        self._ctl_socket: Any = None
        self.current_model: ModelSpec | None = None
        self.model_index = 0
        self.epoch: int | None = None
        #: Index of the last epoch whose ``epoch_end`` arrived (what ``last.ckpt`` holds).
        self.completed_epoch: int | None = None
        #: The same per model head, kept after the model ends (a finished model's final epoch).
        self.completed_epochs: dict[str, int] = {}
        self.last_logs: dict = {}

    def describe(self) -> str:
        """Short progress text for status and busy messages, e.g. ``centroid 1/2, epoch 3/10``."""
        if self.current_model is None:
            return "starting"
        n = len(self.spec.models)
        text = f"{self.current_model.head}" + (f" {self.model_index + 1}/{n}" if n > 1 else "")
        if self.epoch is not None:
            total = self.current_model.max_epochs
            text += f", epoch {self.epoch + 1}" + (f"/{total}" if total else "")
        return text

    async def stop_early(self) -> None:
        """Ask sleap-nn to end the current model's training after this batch.

        It saves nothing new but keeps ``best.ckpt`` and exits 0, as in SLEAP's
        loss viewer. The request is re-sent on later batches until training
        ends, in case sleap-nn had not connected its controller socket yet.
        """
        self._stop_requested = True
        logger.info("job %s: stop early requested (%s)", self.job_id, self.describe())
        await self._send_stop()

    async def _send_stop(self) -> None:
        if self._exec is not None and self._exec.running:
            await self._exec.request_stop()
        if self._ctl_socket is None:
            return
        self._stop_sent_at = time.monotonic()
        await self._ctl_socket.send_string(json.dumps({"command": "stop"}))

    def _on_message(self, raw: str) -> None:
        if self.current_model is not None:
            self._handle_message(raw, self.current_model, self.model_index, len(self.spec.models))

    def _argv(self, model: ModelSpec, publish_port: int, controller_port: int) -> list[str]:
        cfg = model.config_path
        labels = self.spec.labels_path
        if not is_plain_file_name(model.run_name):
            raise ProcessFailed(f"run name {model.run_name[:80]!r} is not a plain folder name")
        checked_paths(self.spec.root, f"sleap-nn train ({model.head})", cfg, *([labels] if labels is not None else []))
        checked_paths(self.output_dir, f"sleap-nn train ({model.head})", self.output_dir / model.run_name)
        overrides = [
            f"++trainer_config.ckpt_dir={hydra_value(self.output_dir.resolve().as_posix())}",
            f"++trainer_config.run_name={hydra_value(model.run_name)}",
            "++trainer_config.save_ckpt=true",
            f"++trainer_config.zmq.publish_port={publish_port}",
            f"++trainer_config.zmq.controller_port={controller_port}",
        ]
        if labels is not None:
            overrides.append(f"++data_config.train_labels_path=[{hydra_value(labels.resolve().as_posix())}]")
        extra = self._overrides + self._model_overrides.get(model.head, [])
        overrides += [o if o.startswith(("+", "~")) else f"++{o}" for o in extra]
        return sleap_nn_argv(
            self._python,
            "train",
            "--config-name",
            cfg.stem,
            "--config-dir",
            cfg.parent.resolve().as_posix(),
            *overrides,
        )

    def _died_opening_best_ckpt(self) -> bool:
        """sleap-nn's end when no epoch beat the checkpoint it resumed from (no best.ckpt
        written, then opened): the checkpoint is the model. Any other crash stays a failure."""
        tail = "\n".join([*self._stderr_tail, *self._stdout_tail])
        return "FileNotFoundError" in tail and "best.ckpt" in tail

    def _find_run_dir(self, model: ModelSpec, announced: list[str], started: float) -> Path | None:
        for path in reversed(announced):
            p = Path(path)
            if not p.is_absolute():
                p = self.spec.root / p
            # A line in sleap-nn's output is not proof: the run dir must be one the worker chose.
            if inside(self.output_dir, p) and p.resolve() != self.output_dir.resolve() and (p / "best.ckpt").is_file():
                return p
        pattern = re.compile(re.escape(model.run_name) + r"(-\d+)?$")
        candidates = [
            d
            for d in self.output_dir.glob("*")
            if d.is_dir() and pattern.match(d.name) and (d / "best.ckpt").is_file() and d.stat().st_mtime >= started - 1
        ]
        return max(candidates, key=lambda d: d.stat().st_mtime) if candidates else None

    async def run(self) -> TrainingResult:
        """Train every model; return the real run dirs (sleap-nn may add ``-1``)."""
        import zmq
        import zmq.asyncio

        t0 = time.monotonic()
        self.output_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ctx = zmq.asyncio.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt_string(zmq.SUBSCRIBE, "")
        pub = ctx.socket(zmq.PUB)
        publish_port = sub.bind_to_random_port("tcp://127.0.0.1")
        controller_port = pub.bind_to_random_port("tcp://127.0.0.1")
        self._ctl_socket = pub
        run_dirs: list[Path] = []
        stopped: list[str] = []
        n_models = len(self.spec.models)
        try:
            for index, model in enumerate(self.spec.models):
                self.current_model, self.model_index, self.epoch, self.completed_epoch = model, index, None, None
                self._stop_requested = False
                self._emit({"kind": "job", "event": "model_begin", "model": model.head, "model_index": index, "n_models": n_models, "run_dir": None})
                announced: list[str] = []

                def on_line(line: str, stream: str, _announced=announced) -> bool:
                    m = _CKPT_DIR_LINE.search(line)
                    if m:
                        _announced.append(m.group(1))
                    return False

                started = time.time()
                receiver = asyncio.create_task(self._receive(sub, model, index, n_models))
                try:
                    rc = await self._spawn_and_wait(
                        self._argv(model, publish_port, controller_port), cwd=self.spec.root, model=model.head, handle_line=on_line
                    )
                    started = min(started, getattr(self._exec, "submitted_at", started))  # an adopted run began earlier
                    # Messages sent just before exit may still be in flight.
                    await self._drain(sub, model, index, n_models)
                finally:
                    receiver.cancel()
                    await asyncio.gather(receiver, return_exceptions=True)
                if self._cancelled:
                    raise ProcessCancelled(f"job {self.job_id} was cancelled during {model.head} training")
                run_dir = await asyncio.to_thread(self._find_run_dir, model, announced, started) if rc == 0 else None
                if run_dir is None and model.head in self._finish_from and (rc == 0 or self._died_opening_best_ckpt()):
                    run_dir = await asyncio.to_thread(complete_run_dir, self.output_dir, model.run_name, self._finish_from[model.head], started)
                    if run_dir is not None:
                        logger.info("job %s: %s had no epoch left to train; finished from its final checkpoint in %s", self.job_id, model.head, run_dir)
                if rc != 0 and run_dir is None:
                    raise self._failure(f"sleap-nn train ({model.head})", rc)
                if run_dir is None:
                    raise ProcessFailed(
                        f"sleap-nn train ({model.head}) exited 0 but wrote no best.ckpt under {self.output_dir}",
                        list(self._stderr_tail),
                    )
                if self._stop_requested:
                    stopped.append(model.head)
                run_dirs.append(run_dir)
                logger.info("job %s: %s trained in %s", self.job_id, model.head, run_dir)
                self._emit({"kind": "job", "event": "model_end", "model": model.head, "model_index": index, "n_models": n_models, "run_dir": str(run_dir)})
        finally:
            self._ctl_socket = None
            sub.close(linger=0)
            pub.close(linger=0)
            ctx.term()
        return TrainingResult(self.job_id, run_dirs, stopped, time.monotonic() - t0)

    def _handle_message(self, raw: str, model: ModelSpec, index: int, n_models: int) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            logger.warning("job %s: unreadable progress message %.80r", self.job_id, raw)
            return
        if not isinstance(msg, dict) or msg.get("event") == "batch_start":
            return
        event = msg.get("event")
        if event in ("epoch_begin", "epoch_end") and isinstance(msg.get("epoch"), int):
            self.epoch = msg["epoch"]
        if event == "epoch_end" and isinstance(msg.get("epoch"), int):
            self.completed_epoch = self.completed_epochs[model.head] = msg["epoch"]
        if event == "epoch_end" and isinstance(msg.get("logs"), dict):
            self.last_logs = msg["logs"]
        if event == "epoch_end":
            logger.info("job %s: %s", self.job_id, self.describe())
        self._emit({"kind": "progress", "model": model.head, "model_index": index, "n_models": n_models,
                    "max_epochs": model.max_epochs, **msg})

    async def _receive(self, sub, model: ModelSpec, index: int, n_models: int) -> None:
        while True:
            raw = await sub.recv_string()
            self._handle_message(raw, model, index, n_models)
            if self._stop_requested and time.monotonic() - self._stop_sent_at > 0.5:
                await self._send_stop()

    async def _drain(self, sub, model: ModelSpec, index: int, n_models: int, quiet: float = 0.3) -> None:
        import zmq

        while await sub.poll(int(quiet * 1000), zmq.POLLIN):
            self._handle_message(await sub.recv_string(), model, index, n_models)


class InferenceJob(_Job):
    """Run ``sleap-nn track`` (or ``predict``) ``--gui`` for each inference entry."""

    def __init__(
        self,
        job_id: str,
        spec: JobSpec,
        *,
        on_event: EventCallback | None = None,
        python: str | None = None,
        env: dict[str, str] | None = None,
        output_dir: str | Path | None = None,
        model_paths: Sequence[str | Path] | None = None,
        executor: Executor | None = None,
    ):
        super().__init__(job_id, on_event=on_event, python=python, env=env, executor=executor)
        if not spec.inference:
            raise ValueError("InferenceJob needs a spec with at least one inference entry")
        self.spec = spec
        self.output_dir = Path(output_dir) if output_dir else spec.root / "predictions"
        self._model_paths = [Path(p) for p in model_paths] if model_paths else None
        self.progress: dict = {}
        self._error: str | None = None

    def describe(self) -> str:
        if not self.progress:
            return "starting inference"
        return f"inference {self.progress.get('n_processed')}/{self.progress.get('n_total')} frames"

    def _argv(self, entry: InferenceSpec, output: Path) -> list[str]:
        models = self._model_paths or entry.model_paths
        if not is_plain_file_name(entry.output_name):
            raise ProcessFailed(f"output name {entry.output_name[:80]!r} is not a plain file name")
        checked_paths(self.spec.root, f"sleap-nn {entry.command}", entry.data_path, *(() if self._model_paths else models))
        checked_paths(self.output_dir, f"sleap-nn {entry.command}", output)
        try:
            extra = check_extra_args(entry.extra_args, entry.command, f"sleap-nn {entry.command}")
            device = check_device(entry.device, f"sleap-nn {entry.command}")
        except PackageError as exc:
            raise ProcessFailed(str(exc)) from None
        args = [entry.command, "--gui", "--data_path", entry.data_path.resolve().as_posix()]
        for m in models:
            args += ["--model_paths", Path(m).resolve().as_posix()]
        args += ["-o", output.resolve().as_posix()]
        if device:
            args += ["--device", device]
        if entry.only_suggested_frames:
            args += ["--only_suggested_frames"]
        if entry.video_index is not None:
            args += ["--video_index", str(entry.video_index)]
        if entry.frames:
            args += ["--frames", frame_ranges(entry.frames)]
        args += extra
        return sleap_nn_argv(self._python, *args)

    def _on_line(self, line: str, stream: str) -> bool:
        if stream != "stdout" or not line.startswith("{"):
            return False
        try:
            msg = json.loads(line)
        except ValueError:
            return False
        if not isinstance(msg, dict):
            return False
        if msg.get("error"):
            self._error = f"{msg.get('type', 'Error')}: {msg.get('message', '')}"
            return False
        if "n_processed" in msg:
            self.progress = msg
            self._emit({"kind": "inference_progress", **msg})
            return True
        return False

    async def run(self) -> InferenceResult:
        """Run every inference entry; return the predictions ``.slp`` paths."""
        t0 = time.monotonic()
        self.output_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        outputs = []
        for index, entry in enumerate(self.spec.inference):
            output = self.output_dir / entry.output_name
            rc = await self._spawn_and_wait(self._argv(entry, output), cwd=self.spec.root, model=None, handle_line=self._on_line, key=f"infer-{index}")
            if self._cancelled:
                raise ProcessCancelled(f"job {self.job_id} was cancelled during inference")
            if rc != 0:
                if self._error:
                    raise ProcessFailed(f"sleap-nn {entry.command} exited with code {rc}: {self._error}", list(self._stderr_tail))
                raise self._failure(f"sleap-nn {entry.command}", rc)
            if not output.is_file():
                raise ProcessFailed(f"sleap-nn {entry.command} exited 0 but wrote no {output.name}", list(self._stderr_tail))
            outputs.append(output)
        return InferenceResult(self.job_id, outputs, time.monotonic() - t0)
