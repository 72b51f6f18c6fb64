"""Say what really happened to a job when its session ends badly.

Two endings looked alike and were reported falsely: a ``job_cancelled`` the user never
asked for (the worker was stopped -- SIGTERM, service restart -- and cancelled its
job), and a lost peer link, which was always "the job keeps running there" even when
the worker had died with its sleap-nn. The coordinator knows which: a worker that is
gone stops answering heartbeats and leaves the room within its heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from .errors import RemoteError

log = logging.getLogger(__name__)

#: The worker stopped (shut down or restarted) and cancelled the job on its way out.
WORKER_STOPPED = "worker_stopped"
#: The worker vanished mid-job (killed, crashed, lost power): its job died with it.
WORKER_LOST = "worker_lost"

PresenceProbe = Callable[[], Awaitable["bool | None"]]


def _fate(queued: bool) -> str:
    if queued:
        return "the coordinator puts a queued job back in the queue, and the next free worker runs it from the start (or its last checkpoint)"
    return "a job sent straight to a worker ends with it: nothing was returned, submit it again"


def cancelled_error(err: RemoteError, *, cancel_requested: bool, queued: bool, worker: str) -> RemoteError:
    """``job_cancelled`` the user asked for stays ``cancelled``; any other is ``worker_stopped``."""
    if err.code not in ("job_cancelled", "cancelled"):
        return err
    if cancel_requested:
        return RemoteError("cancelled", "the job was cancelled as you asked; nothing was changed in your project")
    if queued:  # the queue's own word: cancelled from elsewhere (a worker stopping requeues a queued job instead)
        return err
    return RemoteError(WORKER_STOPPED, f"worker {worker or '?'} was stopped while running the job and cancelled it ({err.message}); {_fate(queued)}")


async def lost_link_error(exc: BaseException, probe: PresenceProbe, *, queued: bool, worker: str, job_id: str,
                          wait_s: float, poll_s: float = 1.0) -> RemoteError:
    """``worker_lost`` when the worker left the room within ``wait_s``, else ``connection_lost``.

    ``probe()`` is True while the coordinator still lists the worker, False once it is
    gone, None when the coordinator cannot be asked (then nothing is claimed either way)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    present: bool | None = None
    while True:
        try:
            present = await probe()
        except Exception as e:  # noqa: BLE001 - any failure to ask is "unknown", never a second error
            log.info("job %s: could not ask the coordinator about worker %s: %s", job_id, worker, e)
            present = None
        if present is not True or loop.time() >= deadline:
            break
        await asyncio.sleep(poll_s)
    if present is False:
        return RemoteError(WORKER_LOST, f"worker {worker} went offline during job {job_id} (killed, crashed or cut off; {exc}); {_fate(queued)}")
    if present is True:
        return RemoteError("connection_lost", f"lost the connection to worker {worker} ({exc}), which is still online: job {job_id} keeps "
                                              "running there and its results wait on it until this project fetches them")
    return RemoteError("connection_lost", f"lost the connection to worker {worker} ({exc}) and could not reach the coordinator to learn "
                                          f"whether job {job_id} still runs")


def presence_probe(open_coordinator: Callable[[], Any], worker_id: str) -> PresenceProbe:
    """A probe that asks the coordinator (a fresh connection each time) whether ``worker_id`` is in the room."""

    async def probe() -> bool | None:
        async with open_coordinator() as coord:
            peers = await coord.discover(role="worker")
        return any(getattr(p, "peer_id", None) == worker_id for p in peers)

    return probe
