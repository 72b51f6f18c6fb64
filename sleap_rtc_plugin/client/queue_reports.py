"""What the client of a queued job tells the coordinator about the attempt it follows.

The coordinator cannot see inside the peer link, so two facts only the client knows
must reach it: the dispatched worker failed the room-secret proof (it is not a worker
of this room: requeue the job without it, rather than let it end the job), and the
verified results are installed here (only then is a training job ``succeeded``;
a worker's word alone would let a rogue one end a job with no model).
"""

from __future__ import annotations

import asyncio
import logging

from ..coordinator.client import CoordinatorClient, CoordinatorError
from ..peer.errors import AuthError
from .errors import RemoteError

log = logging.getLogger(__name__)

#: Authentication failures that say the *worker* is not one of this room's: it failed its
#: proof, has no secret, refused our correct proof, or spoke out of turn. (``missing_secret``
#: -- this client has no secret -- is the client's own problem and ends the job.)
ROGUE_AUTH_CODES = frozenset({"worker_failed", "worker_unauthenticated", "bad_secret", "protocol"})
#: Not fatal to the queued job: the coordinator requeues it without that worker.
WORKER_AUTH_FAILED = "worker_auth_failed"
_RETRY_CODES = frozenset({"disconnected", "timeout"})


async def _client_report(coord: CoordinatorClient, job_id: str, attempt: int, outcome: str, message: str = "", *, tries: int = 10) -> bool:
    """Deliver one report, riding out a short coordinator outage (the client reconnects)."""
    for _ in range(tries):
        try:
            await coord.client_report(job_id, attempt, outcome, message)
            return True
        except CoordinatorError as exc:
            if exc.code not in _RETRY_CODES:
                log.warning("job %s attempt %d: the coordinator refused the %s report: %s", job_id, attempt, outcome, exc)
                return False
            await asyncio.sleep(1.0)
    log.warning("job %s attempt %d: %s report not delivered (coordinator unreachable)", job_id, attempt, outcome)
    return False


async def report_rogue_worker(coord: CoordinatorClient, job_id: str, attempt: int, worker: str, exc: AuthError) -> RemoteError:
    """Report a worker that failed authentication; the error to end this attempt with (not the job)."""
    log.warning("job %s attempt %d: worker %s failed the room-secret check (%s: %s); reporting it", job_id, attempt, worker, exc.code, exc)
    await _client_report(coord, job_id, attempt, "auth_failed", f"{exc.code}: {exc}")
    return RemoteError(WORKER_AUTH_FAILED, f"worker {worker} failed the room-secret check ({exc}); reported to the coordinator, "
                                           "which gives the job to another worker")


async def confirm_results(coord: CoordinatorClient, job_id: str, attempt: int) -> bool:
    """The verified results of ``attempt`` are installed here: the job may end ``succeeded``."""
    return await _client_report(coord, job_id, attempt, "results_received")


async def confirm_if_queued(coord: CoordinatorClient, job_id: str, owner: str) -> None:
    """Results of a queued job fetched later with ``--attach`` (say, after a full disk was
    cleared): the coordinator still waits in ``results_ready`` for this word. Following the
    job takes the owner credential; a job the queue does not know needs nothing."""
    try:
        update = await coord.queue_watch(job_id, owner=owner or None)
    except CoordinatorError:
        return
    if update.state == "results_ready":
        await confirm_results(coord, job_id, update.attempt)
