"""The Slurm executor: each sleap-nn command becomes one ``sbatch`` job.

The job's stdout/stderr, progress messages (:mod:`.jobwrap`) and exit status are
files in its state dir on the shared staging filesystem; :class:`SlurmExecution`
reads them incrementally and polls slurmctld for the job's state, reporting
"pending: Resources, position 3" while it waits. A state dir that already holds a
submission (``record.json``) is adopted rather than submitted again: that is how a
restarted worker picks its running jobs back up (:mod:`.adopt`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from ...protocol.names import is_plain_file_name
from ..jobproc import ProcessFailed
from . import commands
from .commands import INFRASTRUCTURE, JobInfo, SlurmError
from .options import SlurmOptions
from .script import render

log = logging.getLogger(__name__)

RECORD = "record.json"
_GUARD = "sleap_rtc_plugin.worker.orphan_guard"


class _Tail:
    """New complete lines of a file that another machine appends to."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, b""

    def read(self, final: bool = False) -> list[bytes]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(8 << 20)
        except FileNotFoundError:
            data = b""
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        if final and self.partial:
            lines.append(self.partial)
            self.partial = b""
        return [line.rstrip(b"\r") for line in lines]


def sleap_nn_command(argv: list[str], python: str) -> list[str]:
    """The runner's argv without :mod:`.orphan_guard` (the worker is not the job's parent on a
    compute node; Slurm ends the job instead), run by the cluster's Python."""
    if len(argv) > 4 and argv[1:4] == ["-P", "-m", _GUARD]:
        return [python, "-P", "-m", "sleap_nn.cli", *argv[5:]]
    return [python, *argv[1:]]


class SlurmExecution:
    def __init__(self, executor: "SlurmExecutor", slurm_id: str, state_dir: Path, submitted_at: float, on_line, on_message, on_status):
        self.executor, self.slurm_id, self.state_dir, self.submitted_at = executor, slurm_id, state_dir, submitted_at
        self._on_line, self._on_message, self._on_status = on_line, on_message, on_status
        self._tails = {"stdout": _Tail(state_dir / "stdout.log"), "stderr": _Tail(state_dir / "stderr.log"),
                       "events": _Tail(state_dir / "events.jsonl")}
        self._info: JobInfo | None = None
        self._cancelling = False
        self._said = ""
        self._ended = asyncio.Event()
        self._wake = asyncio.Event()

    @property
    def ident(self) -> str:
        return f"slurm job {self.slurm_id}"

    @property
    def running(self) -> bool:
        return not self._ended.is_set()

    @property
    def opts(self) -> SlurmOptions:
        return self.executor.opts

    async def _read(self, final: bool = False) -> None:
        for name, tail in self._tails.items():
            for raw in await asyncio.to_thread(tail.read, final):
                if name == "events":
                    self._on_message(raw.decode("utf-8", "replace"))
                elif raw:
                    self._on_line(raw, name)

    async def _say(self, info: JobInfo) -> None:
        """Tell the client what Slurm is doing with the job, each time that changes."""
        status: dict[str, Any] = {"kind": "scheduler", "scheduler": "slurm", "slurm_job_id": self.slurm_id, "state": info.state.lower(),
                                  "reason": info.reason, "node": info.node, "partition": info.partition}
        if info.state == "PENDING":
            with_pos = await commands.queue_position(self.slurm_id, self.opts.command_env)
            status["position"] = with_pos
            text = f"pending: {info.reason}" + (f", position {with_pos}" if with_pos else "")
        elif info.state == "RUNNING":
            text = f"running on {info.node or 'a node'}"
        else:
            text = info.state.lower()
        if text != self._said:
            self._said = status["message"] = text
            log.info("job %s: slurm job %s %s", self.executor.job_id, self.slurm_id, text)
            self._on_status(status)
            self._on_line(f"slurm job {self.slurm_id}: {text}".encode(), "slurm")

    async def _poll(self) -> JobInfo | None:
        """Until the job ends: its last state, or None when slurmctld no longer knows it
        (purged after ``MinJobAge``): then the job's exit file decides."""
        while True:
            await self._read()
            try:
                info = await commands.job_info(self.slurm_id, self.opts.command_env)
            except SlurmError as exc:
                log.warning("job %s: %s; asking again", self.executor.job_id, exc)
                info = self._info
            if info is None:
                if self._info is not None or time.time() - self.submitted_at > 60 or (self.state_dir / "exit_code").exists():
                    return None
            else:
                self._info = info
                await self._say(info)
                if info.finished:
                    return info
            if self.executor.detached:
                return info
            try:
                await asyncio.wait_for(self._wake.wait(), self.opts.poll_interval)
            except asyncio.TimeoutError:
                pass

    async def _exit_code(self, wait: float) -> int | None:
        path = self.state_dir / "exit_code"
        deadline = time.monotonic() + wait
        while True:
            try:
                return int((await asyncio.to_thread(path.read_text)).strip())
            except (FileNotFoundError, ValueError):
                if time.monotonic() >= deadline:
                    return None
                await asyncio.sleep(0.2)

    async def wait(self) -> int:
        try:
            info = await self._poll()
            if self.executor.detached and (info is None or not info.finished):
                return -1
            if info is not None:
                await self._completing_done(60.0)
            rc = await self._exit_code(10.0 if info is None or info.state == "COMPLETED" else 2.0)
            await self._read(final=True)
        finally:
            self._ended.set()
        if self._cancelling:
            return rc if rc is not None else -15
        if info is not None and info.state in INFRASTRUCTURE:
            raise ProcessFailed(f"slurm job {self.slurm_id} ended {info.state} ({info.reason}) on {info.node or 'its node'}: "
                            "the cluster's failure, not the job's", infra=True)
        if info is not None and info.state == "CANCELLED":
            raise ProcessFailed(f"slurm job {self.slurm_id} was cancelled on the cluster (scancel outside sleap-rtc)")
        if rc is None:
            if info is not None and info.exit_code is not None and info.state in ("COMPLETED", "FAILED"):
                return info.exit_code
            raise ProcessFailed(f"slurm job {self.slurm_id} ended without an exit status ({info.state if info else 'no record left'})", infra=True)
        return rc

    async def _wait_ended(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._ended.wait()), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def _completing_done(self, timeout: float) -> None:
        """A job ended by TIMEOUT/scancel is still COMPLETING while Slurm kills its processes
        (``KillWait``): wait them out, so a retry never shares the job dir with a dying run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not (await commands.run(["squeue", "-h", "-j", self.slurm_id, "-o", "%T"], self.opts.command_env)).strip():
                    return
            except SlurmError:
                return  # purged already: nothing is left of it
            await asyncio.sleep(min(0.5, self.opts.poll_interval))

    async def _gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = await commands.job_info(self.slurm_id, self.opts.command_env)
            if info is None or info.finished:
                return True
            await asyncio.sleep(min(0.5, self.opts.poll_interval))
        return False

    async def kill(self, grace: float) -> None:
        """scancel: TERM to every process of the job, ``grace`` s, KILL, then end the job."""
        if not self.running:
            return
        if self.executor.detached:
            self._wake.set()
            await self._ended.wait()
            return
        self._cancelling = True
        env = self.opts.command_env
        with_ok = True
        try:
            await commands.scancel(self.slurm_id, signal="TERM", env=env)
            if not await self._gone(grace):
                log.warning("job %s: slurm job %s ignored TERM for %.0fs; sending KILL", self.executor.job_id, self.slurm_id, grace)
                await commands.scancel(self.slurm_id, signal="KILL", env=env)
            await commands.scancel(self.slurm_id, env=env)
            with_ok = await self._gone(60.0)
        except SlurmError as exc:
            log.error("job %s: cancelling slurm job %s failed: %s", self.executor.job_id, self.slurm_id, exc)
            with_ok = False
        if not with_ok:
            log.error("job %s: slurm job %s still listed after scancel", self.executor.job_id, self.slurm_id)

    async def request_stop(self) -> None:
        await asyncio.to_thread((self.state_dir / "stop").touch)


class SlurmExecutor:
    name = "slurm"
    local_zmq = False

    def __init__(self, job_id: str, job_dir: Path, opts: SlurmOptions, *, gpus: int | None = None, on_status: Callable[[dict], None] | None = None):
        self.job_id, self.job_dir, self.opts, self.gpus = job_id, Path(job_dir), opts, gpus
        #: The worker is exiting and leaves the Slurm job running (adopted on its next start).
        self.detached = False
        self.on_status = on_status or (lambda status: None)

    def state_dir(self, key: str) -> Path:
        if not is_plain_file_name(key):
            raise ProcessFailed(f"cannot name a slurm state dir {key[:60]!r}")
        return self.job_dir / "slurm" / key

    async def start(self, argv: list[str], *, cwd: Path, env: dict[str, str], on_line, on_message, key: str) -> SlurmExecution:
        state_dir = self.state_dir(key)
        record = await asyncio.to_thread(read_record, state_dir)
        if record is not None:
            log.info("job %s: adopting slurm job %s (%s)", self.job_id, record["slurm_job_id"], key)
            return SlurmExecution(self, record["slurm_job_id"], state_dir, float(record["submitted_at"]), on_line, on_message, self.on_status)
        await asyncio.to_thread(_fresh_dir, state_dir)
        script = state_dir / "job.sbatch"
        text = render(self.opts, name=f"sleap-rtc-{self.job_id}-{key}"[:120], state_dir=state_dir.resolve(), cwd=cwd.resolve(),
                      argv=sleap_nn_command(argv, self.opts.python), gpus=self.gpus)
        await asyncio.to_thread(script.write_text, text)
        submitted_at = time.time()
        try:
            slurm_id = await commands.sbatch(str(script), self.opts.command_env)
        except SlurmError as exc:
            raise ProcessFailed(f"could not submit to Slurm: {exc}", infra=True) from None
        await asyncio.to_thread(_write_record, state_dir, {"slurm_job_id": slurm_id, "submitted_at": submitted_at, "key": key})
        log.info("job %s: submitted %s as slurm job %s", self.job_id, key, slurm_id)
        return SlurmExecution(self, slurm_id, state_dir, submitted_at, on_line, on_message, self.on_status)


def read_record(state_dir: Path) -> dict | None:
    try:
        record = json.loads((state_dir / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) and str(record.get("slurm_job_id", "")).isdigit() else None


def _write_record(state_dir: Path, record: dict) -> None:
    tmp = state_dir / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(state_dir / RECORD)


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)


class SlurmExecutorFactory:
    """What the engine calls per job: ``factory(job_id, job_dir, gpus=…, on_status=…)``."""

    def __init__(self, opts: SlurmOptions):
        self.opts = opts

    @property
    def staging_dir(self) -> Path | None:
        return self.opts.staging_dir

    def __call__(self, job_id: str, job_dir: Path, **kw: Any) -> SlurmExecutor:
        return SlurmExecutor(job_id, job_dir, self.opts, **kw)
