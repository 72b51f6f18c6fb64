"""How the words a job hears move its one state (:class:`~..protocol.job_state.JobState`).

The worker, the coordinator's queue and the client itself report progress with more
words than there are states (``connecting``, ``receiving``, ``results_ready``…). A
:class:`~sleap_rtc_plugin.client.job_handle.JobHandle`, the project's job list and
the GUI's Remote Jobs panel speak only the protocol's :class:`JobState`; this module is
the single translation. Seen from the client:

- ``reserved``: not submitted yet (owner credential, connection)
- ``queued`` → ``dispatched`` (a worker is being connected) → ``transferring`` (upload)
  → ``accepted``/``running``/``stopping``
- ``succeeded``: finished, results waiting or on their way
- ``acknowledged``: results installed in the project (fetched; never fetched twice)
- ``failed`` / ``cancelled``

A detached job keeps the state it had: detaching changes who follows it, not the job.
"""

from __future__ import annotations

from ..protocol.job_state import JobState

S = JobState

_FROM_REPORTS: dict[str, JobState] = {
    "queued": S.QUEUED,
    "waiting": S.QUEUED,
    "dispatched": S.DISPATCHED,
    "connecting": S.DISPATCHED,
    "connected": S.DISPATCHED,
    "resuming": S.TRANSFERRING,
    "transferring": S.TRANSFERRING,
    "transferred": S.TRANSFERRING,
    "accepted": S.ACCEPTED,
    "running": S.RUNNING,
    "stopping": S.STOPPING,
    "succeeded": S.SUCCEEDED,
    "results_ready": S.SUCCEEDED,
    "receiving": S.SUCCEEDED,
    "failed": S.FAILED,
    "cancelled": S.CANCELLED,
}


def state_of(reported: str, current: JobState) -> JobState:
    """The state a reported word means; unknown words leave the state as it is."""
    return _FROM_REPORTS.get(reported, current)


def state_after_error(code: str, current: JobState) -> JobState:
    """The state a job is left in when its session ends with error ``code``."""
    if code in ("job_cancelled", "cancelled"):
        return S.CANCELLED
    if code in ("connection_lost", "coordinator_lost", "disk_full", "io_error"):
        return current  # it goes on remotely (or its results wait): attach again
    return S.FAILED


def ended(state: JobState) -> bool:
    """Nothing more will happen to the job (a ``succeeded`` job's results may still wait)."""
    return state in (S.ACKNOWLEDGED, S.FAILED, S.CANCELLED, S.REJECTED)
