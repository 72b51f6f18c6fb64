"""Following a queued job across attempts: the coordinator's updates drive it.

The coordinator tells the client where its job is (``queue_update`` pushes); each
dispatch to a worker is one *attempt*, followed over its own peer link in a task. This
module is that loop: it waits for whichever comes first — the next update or the end
of the current attempt — and moves the job on. Only the current attempt's results are
ever taken; an earlier attempt's link is dropped when a newer one replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Protocol

from ..coordinator.client import CoordinatorClient, CoordinatorError
from ..peer.errors import AuthError, ConnectError, LinkClosedError, PeerLinkError, TransferError
from ..protocol.queue import CheckpointNotice, QueueUpdate
from .checkpoints import CheckpointError, CheckpointStore
from .connect import ConnectionSpec, QueueOptions, coordinator_hint, worker_info
from .errors import RemoteError
from .outcome import EventKind, JobOutcome
from .queue_reports import ROGUE_AUTH_CODES, confirm_results, report_rogue_worker
from .selection import WorkerInfo

log = logging.getLogger(__name__)


class QueuedHandle(Protocol):
    """What following a queued job needs of its :class:`~.job_handle.JobHandle` (which
    calls in here): the job's identity, where it runs now, and the handle's per-link steps."""

    attempt: int
    worker: WorkerInfo | None
    _coord: CoordinatorClient | None
    _checkpoints: CheckpointStore | None

    @property
    def job_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def intent(self) -> str: ...

    @property
    def owner(self) -> str: ...

    @property
    def package_path(self) -> Path | None: ...

    @property
    def project_dir(self) -> Path: ...

    @property
    def queue(self) -> QueueOptions | None: ...

    def _emit(self, kind: EventKind, /, **data: Any) -> None: ...

    async def _open_link(self, coord: CoordinatorClient, spec: ConnectionSpec, worker_id: str, intent: str) -> Any: ...

    async def _over_link(self, link: Any, worker: WorkerInfo, secret: Any, intent: str, *, resume: bool = False) -> JobOutcome: ...

#: Errors of one attempt that another attempt cannot fix: withdraw the queued job.
FATAL_ATTEMPT_CODES = frozenset({"no_package", "missing_secret"})
#: This side cannot take the results now (its disk): end the session, keep the job and its results.
LOCAL_ATTEMPT_CODES = frozenset({"disk_full", "io_error"})
#: How often a finished job's results are asked for again before giving up.
MAX_FETCHES = 3


async def queued_session(handle: QueuedHandle, spec: ConnectionSpec, secret: Any) -> JobOutcome:
    """Submit to the coordinator's queue (or follow a queued job) until its results are in."""
    if handle.package_path is None:
        raise RemoteError("no_package", "a queued job needs its package to hand to the worker that takes it: give --pkg-path PKG (package_path)")
    assert handle.queue is not None and spec.server_url and spec.room_id and spec.token
    if not handle.package_path.is_file():
        raise RemoteError("no_package", f"package {handle.package_path} does not exist")
    coord = CoordinatorClient(spec.server_url, room_id=spec.room_id, token=spec.token, role="client", reconnect=True,
                              backoff_initial=0.2, backoff_max=5.0)
    try:
        await coord.start()
    except CoordinatorError as exc:
        raise RemoteError(exc.code, coordinator_hint(exc, spec.server_url)) from None
    handle._coord = coord
    handle._checkpoints = CheckpointStore(handle.project_dir / ".sleap-rtc" / "checkpoints", handle.job_id)
    try:
        return await QueueFollower(handle, coord, spec, secret).run()
    finally:
        handle._coord = None
        await coord.close()


class QueueFollower:
    """One queued job's loop: updates from the coordinator, one attempt task at a time."""

    def __init__(self, handle: QueuedHandle, coord: CoordinatorClient, spec: ConnectionSpec, secret: Any):
        self.handle = handle
        self.coord = coord
        self.spec = spec
        self.secret = secret
        self.attempt_task: asyncio.Task[JobOutcome] | None = None
        self.last_state = "queued"
        self.fetches = 0
        self.seen_reconnects = coord.reconnects
        self.backlog: list[QueueUpdate] = []

    async def run(self) -> JobOutcome:
        await self._enter_queue()
        waiter: asyncio.Future[QueueUpdate] | None = None
        try:
            while True:
                waiter = asyncio.ensure_future(self._next_update())
                waits: set[asyncio.Future[Any]] = {waiter} | ({self.attempt_task} if self.attempt_task is not None else set())
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if self.attempt_task is not None and self.attempt_task in done:
                    outcome = await self._attempt_ended()
                    if outcome is not None:
                        await _cancel(waiter)
                        return outcome
                if waiter not in done:
                    await _cancel(waiter)
                    continue
                update = await self._update_from(waiter)
                if update is not None:
                    await self._on_update(update)
        finally:
            if waiter is not None and not waiter.done():
                waiter.cancel()  # never left to end unobserved ("Task exception was never retrieved")
            if waiter is not None:
                waiter.add_done_callback(_observe)
            if self.attempt_task is not None:
                await self._drop_attempt(self.attempt_task, "the session ended")

    async def _enter_queue(self) -> None:
        h, q = self.handle, self.handle.queue
        assert q is not None and h.package_path is not None
        job_spec = {"kind": h.kind, "package": h.package_path.name, "size": h.package_path.stat().st_size}
        try:
            if h.intent == "attach":  # follow (and own) the queued job from here on
                self.backlog.append(await self.coord.queue_watch(h.job_id, owner=h.owner))
                return
            position = await self.coord.queue_submit(
                h.job_id, job_spec, min_gpu_memory_mb=q.min_gpu_memory_mb, gpu_count=q.gpu_count, labels=q.labels,
                worker_id=q.worker_id, priority=q.priority, max_retries=q.max_retries, owner=h.owner,
            )
        except CoordinatorError as exc:
            raise RemoteError(exc.code, exc.message) from None
        h._emit("status", state="queued", message=f"queued as job {h.job_id}, position {position} (0 = next)", position=position)

    async def _next_update(self) -> QueueUpdate:
        if self.backlog:
            return self.backlog.pop(0)
        return await self.coord.next_push("queue_update", job_id=self.handle.job_id, timeout=5.0)  # type: ignore[return-value]

    async def _update_from(self, waiter: asyncio.Future[Any]) -> QueueUpdate | None:
        """The update the waiter got; after a quiet spell across a reconnect, ask for it."""
        h = self.handle
        try:
            return waiter.result()
        except TimeoutError:
            if self.coord.reconnects == self.seen_reconnects or not self.coord.connected:
                return None
            try:
                update = await self.coord.queue_watch(h.job_id, owner=h.owner)  # updates may have been missed while away
            except CoordinatorError as exc:
                log.info("job %s: queue_watch after reconnect failed: %s", h.job_id, exc)
                return None
            self.seen_reconnects = self.coord.reconnects
            return update
        except CoordinatorError as exc:
            raise RemoteError("coordinator_lost", f"lost the coordinator ({exc.message}); the job stays queued there: check it with `sleap-rtc admin jobs`") from None

    async def _attempt_ended(self) -> JobOutcome | None:
        """The outcome of the attempt that just ended, or ``None`` to keep waiting."""
        h = self.handle
        finished, self.attempt_task = self.attempt_task, None
        assert finished is not None
        try:
            return finished.result()
        except RemoteError as exc:
            if exc.code in FATAL_ATTEMPT_CODES:
                with contextlib.suppress(CoordinatorError):
                    await self.coord.queue_cancel(h.job_id, owner=h.owner)
                raise
            if exc.code in LOCAL_ATTEMPT_CODES:
                raise
            log.warning("job %s attempt %d ended without results: %s", h.job_id, h.attempt, exc)
            h._emit("status", state="waiting", message=f"attempt {h.attempt} ended ({exc.message}); waiting for the coordinator")
        if self.last_state in ("succeeded", "results_ready") and self.fetches < MAX_FETCHES:
            self.fetches += 1
            self._start(h.attempt, h.worker.peer_id if h.worker else "", "attach")
        return None

    async def _on_update(self, update: QueueUpdate) -> None:
        h = self.handle
        self.last_state = update.state
        if update.state == "queued":
            if self.attempt_task is not None:
                await self._drop_attempt(self.attempt_task, "the job was requeued")
                self.attempt_task = None
            h._emit("status", state="queued", message=update.message or f"position {update.position} in the queue", position=update.position)
        elif update.state == "dispatched" and update.attempt > h.attempt and update.worker_id:
            if self.attempt_task is not None:
                await self._drop_attempt(self.attempt_task, f"attempt {update.attempt} replaces it")
            h.attempt = update.attempt
            h._emit("status", state="dispatched", message=update.message or f"dispatched to {update.worker_id}", worker=update.worker_id, attempt=update.attempt)
            self._start(update.attempt, update.worker_id, "submit")
        elif update.state == "dispatched" and update.attempt == h.attempt and self.attempt_task is None and update.worker_id:
            # This attempt ended before its link came up (the coordinator was away); the worker still holds it.
            self._start(update.attempt, update.worker_id, "submit")
        elif update.state == "running" and self.attempt_task is None and update.attempt > h.attempt and update.worker_id:
            h.attempt = update.attempt  # attached while it runs: follow it there
            self._start(update.attempt, update.worker_id, "attach")
        elif update.state == "running":
            h._emit("status", state="running", message=update.message, attempt=update.attempt)
        elif update.state in ("succeeded", "results_ready"):
            if self.attempt_task is None and update.worker_id and self.fetches < MAX_FETCHES:
                self.fetches += 1
                self._start(update.attempt, update.worker_id, "attach")
        elif update.state in ("failed", "cancelled"):
            if self.attempt_task is not None:
                await self._drop_attempt(self.attempt_task, f"the job {update.state}")
                self.attempt_task = None
            raise RemoteError(f"job_{update.state}", update.message or f"the job was {update.state}")

    def _start(self, attempt: int, worker_id: str, intent: str) -> None:
        self.attempt_task = asyncio.ensure_future(self._attempt(attempt, worker_id, intent))

    async def _drop_attempt(self, task: asyncio.Task, why: str) -> None:
        """Stop following an attempt that no longer owns the job; its results are never taken."""
        if not task.done():
            log.info("job %s: dropping the link of an earlier attempt (%s)", self.handle.job_id, why)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _attempt(self, attempt: int, worker_id: str, intent: str) -> JobOutcome:
        h, coord = self.handle, self.coord
        worker = await worker_info(coord, worker_id)
        h.worker = worker
        h._emit("status", state="connecting", message=f"connecting to {worker.name} (attempt {attempt})", worker=worker_id,
                worker_name=worker.name, attempt=attempt)
        try:
            link = await h._open_link(coord, self.spec, worker_id, intent)
            outcome = await h._over_link(link, worker, self.secret, intent, resume=attempt > 1)
        except AuthError as exc:
            if exc.code in ROGUE_AUTH_CODES:
                raise await report_rogue_worker(coord, h.job_id, attempt, worker.name, exc) from None
            raise RemoteError(exc.code, str(exc)) from None
        except (ConnectError, TransferError) as exc:
            raise RemoteError(str(getattr(exc, "code", None) or getattr(exc, "stage", "connect")), str(exc)) from None
        except (LinkClosedError, PeerLinkError) as exc:
            raise RemoteError("connection_lost", f"lost the connection to worker {worker.name} ({exc})") from None
        except CoordinatorError as exc:
            raise RemoteError(exc.code, exc.message) from None
        if not outcome.detached:
            await confirm_results(coord, h.job_id, attempt)
        return outcome


def _observe(fut: asyncio.Future[Any]) -> None:
    """Mark a waiter's ending as seen: the loop it served has already ended."""
    if not fut.cancelled():
        fut.exception()


async def _cancel(fut: asyncio.Future[Any]) -> None:
    fut.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError, CoordinatorError):
        await fut


async def hand_over_checkpoint(handle: QueuedHandle, link: Any) -> None:
    """Every model's newest checkpoint (a top-down job's finished model included)."""
    store = handle._checkpoints
    for info in await asyncio.to_thread(store.per_model) if store is not None else []:
        handle._emit("status", state="resuming", message=f"handing over the checkpoint of {info.model} (epoch {info.epoch}) to resume from")
        await link.send(CheckpointNotice(job_id=handle.job_id, attempt=handle.attempt, model=info.model, sha256=info.sha256, size=info.size, epoch=info.epoch))
        sent = await link.send_file(info.path, name=f"resume-{info.model}.ckpt")
        log.info("job %s: handed over checkpoint %s", handle.job_id, sent.summary())


async def keep_checkpoint(handle: QueuedHandle, link: Any, notice: CheckpointNotice) -> None:
    """A checkpoint relayed by the worker: keep it atomically as the job's latest."""
    try:
        got = await link.receive_file(timeout=max(60.0, notice.size / 1e6))
    except (TimeoutError, TransferError) as exc:
        log.warning("job %s: relayed checkpoint did not arrive: %s", handle.job_id, exc)
        return
    store = handle._checkpoints
    assert store is not None
    try:
        info = await asyncio.to_thread(store.put, got.path, sha256=notice.sha256, model=notice.model, epoch=notice.epoch,
                                       attempt=notice.attempt, move=True)
    except (CheckpointError, OSError) as exc:
        log.warning("job %s: relayed checkpoint not kept: %s", handle.job_id, exc)
        return
    receiver = link.transfers.receiver
    cached = receiver.cached_path(notice.sha256) if receiver is not None else None
    if cached is not None:
        await asyncio.to_thread(cached.unlink, True)
    handle._emit("checkpoint", model=info.model, epoch=info.epoch, attempt=info.attempt, path=str(info.path), size=info.size)
