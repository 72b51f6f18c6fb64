"""Where a sleap-nn command runs: the seam between the runner and the machine.

The runner (``runner.py``) decides *what* to run (argv, cwd, which lines and
messages mean progress); an :class:`Executor` decides *where*: :class:`LocalExecutor`
starts it as a child process of this worker, the Slurm executor
(``worker/slurm/``) submits it with ``sbatch``. Both hand back an
:class:`Execution` with the same four verbs, so training, Stop Early, cancel and
progress work the same on a workstation and on a cluster.

Local processes start in their own session (process group) so cancel can signal
the whole tree: SIGTERM, a grace period, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from pathlib import Path
from typing import Any, Callable, Protocol

logger = logging.getLogger(__name__)

#: ``(raw line bytes, stream name)`` for each stdout/stderr line of the command.
LineSink = Callable[[bytes, str], None]
#: One of sleap-nn's ZMQ progress messages (raw JSON text), when the executor carries them.
MessageSink = Callable[[str], None]


class Execution(Protocol):
    """One started sleap-nn command."""

    @property
    def ident(self) -> str: ...

    @property
    def running(self) -> bool: ...

    async def wait(self) -> int:
        """The command's exit status once it has ended (may raise the runner's ``ProcessFailed``)."""
        ...

    async def kill(self, grace: float) -> None:
        """TERM, ``grace`` seconds, then KILL; returns once the command is gone."""
        ...

    async def request_stop(self) -> None:
        """Pass Stop Early on where the runner's own controller socket cannot reach."""
        ...


class Executor(Protocol):
    name: str
    #: Whether the runner's 127.0.0.1 ZMQ sockets reach the command (False: messages come via ``on_message``).
    local_zmq: bool

    async def start(self, argv: list[str], *, cwd: Path, env: dict[str, str], on_line: LineSink,
                    on_message: MessageSink, key: str) -> Execution:
        """Start ``argv``; ``key`` names this command within its job (a model head, ``infer-0``)."""
        ...


class LocalExecution:
    """A sleap-nn child process of this worker, in its own process group."""

    def __init__(self, job_id: str, proc: asyncio.subprocess.Process, on_line: LineSink, stream_timeout: float):
        self.job_id = job_id
        self.proc = proc
        self._stream_timeout = stream_timeout
        self._pumps = [
            asyncio.create_task(self._pump(proc.stdout, "stdout", on_line)),
            asyncio.create_task(self._pump(proc.stderr, "stderr", on_line)),
        ]

    @property
    def ident(self) -> str:
        return f"pid {self.proc.pid}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    @staticmethod
    async def _pump(stream: asyncio.StreamReader | None, name: str, on_line: LineSink) -> None:
        """Split a pipe into lines on ``\\n`` or ``\\r`` without a line-length limit."""
        if stream is None:
            return
        buf = b""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = re.split(rb"\r\n|\r|\n", buf)
            if len(buf) > 1 << 20:
                lines.append(buf)
                buf = b""
            for raw in lines:
                on_line(raw, name)
        if buf:
            on_line(buf, name)

    async def wait(self) -> int:
        try:
            rc = await self.proc.wait()
        except BaseException:
            for task in self._pumps:
                task.cancel()
            raise
        # A grandchild that inherited the pipes can keep them open; don't hang on it.
        _, pending = await asyncio.wait(self._pumps, timeout=self._stream_timeout)
        for task in pending:
            task.cancel()
        return rc

    def _signal_group(self, sig: int) -> None:
        try:
            if os.name == "nt":
                self.proc.kill() if sig == getattr(signal, "SIGKILL", None) else self.proc.terminate()
            else:
                os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    async def kill(self, grace: float) -> None:
        proc = self.proc
        if proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except asyncio.TimeoutError:
                logger.warning("job %s: pid %d ignored SIGTERM for %.0fs; sending SIGKILL", self.job_id, proc.pid, grace)
        # Kill whatever is left of the group (data loader workers, DDP children).
        self._signal_group(getattr(signal, "SIGKILL", signal.SIGTERM))
        if proc.returncode is None:
            await proc.wait()

    async def request_stop(self) -> None:
        """Nothing to do: sleap-nn connects to the runner's controller socket itself."""


class LocalExecutor:
    """Run sleap-nn as a child process of the worker (the default executor)."""

    name = "local"
    local_zmq = True

    def __init__(self, job_id: str = "", *, stream_timeout: float = 5.0):
        self.job_id = job_id
        self.stream_timeout = stream_timeout

    async def start(self, argv: list[str], *, cwd: Path, env: dict[str, str], on_line: LineSink,
                    on_message: MessageSink, key: str) -> LocalExecution:
        posix_only: dict[str, Any] = {"umask": 0o077} if os.name != "nt" else {}  # models and predictions are the lab's data
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(cwd),
            env=env,
            start_new_session=os.name != "nt",
            **posix_only,
        )
        logger.info("job %s: sleap-nn pid %d", self.job_id, proc.pid)
        return LocalExecution(self.job_id, proc, on_line, self.stream_timeout)
