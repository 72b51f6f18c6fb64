"""Fetch a finished job's results: room first, verified files, then the acknowledgement.

The worker deletes its outbox copy only when the client acknowledges, so the client
acknowledges only once every file is verified *and* installed in the project. Anything
that stops it on the way -- a full disk above all -- ends the fetch at once with one
line saying what to free and how to fetch again (``--attach``), and no ack: the
worker keeps the results. Before a byte moves, free space in the project is checked
against the announced sizes; a disk that fills during the transfer is reported by
the worker, whose transfer the client's receiver refused, as a ``peer_error``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..peer.transfer import FREE_SPACE_MARGIN
from ..protocol.peer import JobResult, PeerError, ResultAck, ResultFile, ResultReleased
from ..jobspec.refusals import PackageError
from .errors import RemoteError
from .jobs_store import OwnerStore
from .project_cache import tidy
from .results import install_results

if TYPE_CHECKING:
    from .outcome import JobOutcome

log = logging.getLogger(__name__)

#: How long to wait for the worker to confirm it released its copy.
RELEASE_WAIT = 15.0


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _again(project_dir: Path, job_id: str, worker_id: str) -> str:
    return f"then fetch them with --attach {job_id} --worker-id {worker_id} --project-dir {project_dir} (the worker keeps them until then)"


def space_needed(files: list[ResultFile]) -> int:
    """Announced bytes, again for each model (it is unzipped beside its zip), plus the receiver's margin."""
    return sum(f.size for f in files) + sum(f.size for f in files if f.role == "model") + FREE_SPACE_MARGIN


def ensure_room(project_dir: Path, job_id: str, worker_id: str, files: list[ResultFile]) -> None:
    """Raise ``disk_full`` now, before anything is received, if the results cannot fit."""
    probe = project_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    needed = space_needed(files)
    if free < needed:
        raise RemoteError("disk_full", f"not enough space for the results of job {job_id} in {project_dir}: about {_mib(needed)} needed, "
                                       f"{_mib(free)} free; free some space, {_again(project_dir, job_id, worker_id)}")


def _storage_error(exc: OSError, project_dir: Path, job_id: str, worker_id: str) -> RemoteError:
    if exc.errno == errno.ENOSPC:
        return RemoteError("disk_full", f"the disk holding {project_dir} filled up while installing the results of job {job_id}; "
                                        f"free some space, {_again(project_dir, job_id, worker_id)}")
    return RemoteError("io_error", f"could not install the results of job {job_id} in {project_dir} ({exc.strerror or exc}); "
                                   f"fix that, {_again(project_dir, job_id, worker_id)}")


def _quiet(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


class _Messages:
    """One outstanding ``link.recv()`` shared by every wait here: a cancelled recv would
    lose the message it was about to take (``result_released`` among them)."""

    def __init__(self, link: Any):
        self.link = link
        self.task: asyncio.Task | None = None

    def pending(self) -> asyncio.Task:
        if self.task is None:
            self.task = asyncio.ensure_future(self.link.recv())
            self.task.add_done_callback(_quiet)
        return self.task

    def take(self):
        task, self.task = self.task, None
        assert task is not None
        return task.result()


async def _next_file(link: Any, messages: _Messages, expected: ResultFile, project_dir: Path, job_id: str, worker_id: str):
    """The next received file, or at once the worker's ``peer_error`` when our receiver refused it."""
    timeout = max(60.0, expected.size / 1e6)
    file_task = asyncio.ensure_future(link.receive_file(timeout=timeout))
    file_task.add_done_callback(_quiet)
    try:
        while not file_task.done():
            msg_task = messages.pending()
            await asyncio.wait({file_task, msg_task}, return_when=asyncio.FIRST_COMPLETED)
            if not msg_task.done():
                break
            if msg_task.exception() is not None:
                await asyncio.wait({file_task})  # the link closed: the file wait ends too
                break
            msg = messages.take()
            if isinstance(msg, PeerError):
                hint = f"free some space, {_again(project_dir, job_id, worker_id)}" if msg.code == "disk_full" else _again(project_dir, job_id, worker_id)
                said = " ".join(msg.message.split())[:500]  # the worker's words: one line, bounded
                raise RemoteError(msg.code, f"result {expected.name} was not stored: {said}; {hint}")
            log.debug("job %s: ignoring %s while receiving results", job_id, msg.TYPE)
        return file_task.result()
    except TimeoutError:
        raise RemoteError("result_timeout", f"result {expected.name} of job {job_id} did not arrive within {timeout:g} s; "
                                            f"{_again(project_dir, job_id, worker_id)}") from None
    finally:
        if not file_task.done():
            file_task.cancel()


async def fetch_results(link: Any, result: JobResult, *, project_dir: Path, job_id: str, kind: str, worker_id: str, owner: str,
                        emit: Callable[..., None], local_files: dict[str, Path] | None = None) -> "JobOutcome":
    """Receive, verify and install every result file, then acknowledge with the owner credential.

    ``local_files`` (name sent -> the user's file) let returned labels point at the user's videos."""
    await asyncio.to_thread(ensure_room, project_dir, job_id, worker_id, result.files)
    messages = _Messages(link)
    received = []
    for expected in result.files:
        emit("status", state="receiving", message=f"receiving {expected.name} ({expected.size / 1e6:.1f} MB)")
        got = await _next_file(link, messages, expected, project_dir, job_id, worker_id)
        if got.sha256 != expected.sha256:
            raise RemoteError("result_mismatch", f"received {got.name} does not match the announced hash; {_again(project_dir, job_id, worker_id)}")
        received.append((expected, Path(got.path)))
    try:
        outcome = await asyncio.to_thread(install_results, received, project_dir, job_id, kind, worker_id, local_files)
    except OSError as exc:
        raise _storage_error(exc, project_dir, job_id, worker_id) from None
    except (PackageError, zipfile.BadZipFile) as exc:
        raise RemoteError("bad_result", f"a result of job {job_id} was refused: {exc}") from None
    await asyncio.to_thread(tidy, project_dir, job_id, [f.sha256 for f in result.files])
    await link.send(ResultAck(job_id=job_id, owner=owner))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RELEASE_WAIT
    while True:
        task = messages.pending()
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
        if not done or task.exception() is not None:
            log.warning("job %s: the worker did not confirm the acknowledgement; it keeps the results in its outbox", job_id)
            return outcome
        msg = messages.take()
        if isinstance(msg, ResultReleased):
            await asyncio.to_thread(OwnerStore(project_dir).forget, job_id)
            return outcome
        if isinstance(msg, PeerError):
            log.warning("job %s: the worker kept its copy of the results: %s", job_id, msg.message)
            return outcome
        log.debug("job %s: ignoring %s while waiting for result_released", job_id, msg.TYPE)
