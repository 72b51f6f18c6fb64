"""One sleap-nn command at a time for a job: start it through an executor, keep its
output's tail, stop it on cancel. Shared by training and inference (``runner.py``)."""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from sleap_rtc_plugin.util.tasks import TaskSet
from sleap_rtc_plugin.worker.child_env import _child_env
from sleap_rtc_plugin.worker.executor import Execution, Executor, LocalExecutor

logger = logging.getLogger("sleap_rtc_plugin.worker.runner")

EventCallback = Callable[[dict], Any]

_TAIL_LINES = 40


class ProcessFailed(RuntimeError):
    """sleap-nn exited non-zero (or produced nothing); ``tail`` has its last stderr lines.

    ``infra`` True: the machine failed the job (a cluster node died, the scheduler's time
    limit or OOM killer ended it), not the job itself: a queued job is retried."""

    def __init__(self, message: str, tail: Sequence[str] = (), *, infra: bool = False):
        super().__init__(message)
        self.tail = list(tail)
        self.infra = infra


class ProcessCancelled(ProcessFailed):
    """The job was cancelled and its process group is gone."""


class _Job:
    """Process handling shared by training and inference; *where* it runs is the executor's business."""

    def __init__(
        self,
        job_id: str,
        *,
        on_event: EventCallback | None = None,
        python: str | None = None,
        env: dict[str, str] | None = None,
        stream_timeout: float = 5.0,
        executor: Executor | None = None,
    ):
        self.job_id = job_id
        self._on_event = on_event
        self._python = python or sys.executable
        self._env = _child_env(env)
        self._executor: Executor = executor or LocalExecutor(job_id, stream_timeout=stream_timeout)
        self._exec: Execution | None = None
        self._cancelled = False
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._stdout_tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._event_tasks = TaskSet(logger, f"job {job_id} events")
        self._done = asyncio.Event()
        self._done.set()

    @property
    def pid(self) -> int | None:
        """Pid (and process-group id) of the running local sleap-nn process, if any."""
        return getattr(self._exec, "pid", None) if self.running else None

    @property
    def running(self) -> bool:
        """True while a sleap-nn command of this job exists."""
        return self._exec is not None and self._exec.running

    def _emit(self, event: dict) -> None:
        if self._on_event is None:
            return
        try:
            result = self._on_event(event)
            if asyncio.iscoroutine(result):
                self._event_tasks.spawn(result)
        except Exception:
            logger.exception("job %s: event callback failed", self.job_id)

    def _line(self, raw: bytes, name: str, model: str | None, handle_line) -> None:
        line = raw.decode("utf-8", "replace").rstrip()
        if not line:
            return
        (self._stderr_tail if name == "stderr" else self._stdout_tail).append(line)
        if handle_line is not None and handle_line(line, name):
            return
        self._emit({"kind": "log", "stream": name, "line": line, "model": model})

    def _on_message(self, raw: str) -> None:
        """A progress message that reached us other than over the runner's own ZMQ socket."""

    async def _spawn_and_wait(self, argv: list[str], *, cwd: Path, model: str | None, handle_line=None, key: str = "") -> int:
        if self._cancelled:
            raise ProcessCancelled(f"job {self.job_id} was cancelled")
        self._stderr_tail.clear()
        self._stdout_tail.clear()
        logger.info("job %s: starting %s (%s executor)", self.job_id, " ".join(argv[2:5]), self._executor.name)
        self._done.clear()
        try:
            self._exec = execution = await self._executor.start(
                argv, cwd=cwd, env=self._env, key=key or (model or "run"),
                on_line=lambda raw, name: self._line(raw, name, model, handle_line), on_message=self._on_message,
            )
            rc = await execution.wait()
            logger.info("job %s: sleap-nn (%s) exited with %d", self.job_id, execution.ident, rc)
            return rc
        except BaseException:
            if self._exec is not None:
                await asyncio.shield(self._exec.kill(2.0))
            raise
        finally:
            self._done.set()

    async def cancel(self, grace: float = 10.0) -> None:
        """Stop the job now: SIGTERM the process group, wait ``grace`` s, then SIGKILL.

        Returns once the process has exited; ``run()`` then raises :class:`ProcessCancelled`.
        """
        self._cancelled = True
        logger.info("job %s: cancel requested", self.job_id)
        if self._exec is not None:
            await self._exec.kill(grace)
        await self._done.wait()

    def _failure(self, what: str, rc: int) -> ProcessFailed:
        tail = list(self._stderr_tail) or list(self._stdout_tail)
        reason = next((line.strip() for line in reversed(tail) if line.strip()), "no output")
        if len(reason) > 300:
            reason = reason[:297] + "..."
        return ProcessFailed(f"{what} exited with code {rc}: {reason}", tail)
