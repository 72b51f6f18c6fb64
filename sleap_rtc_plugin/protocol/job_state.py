"""One vocabulary for where a job is, shared by worker, coordinator, client and GUI.

The project grew six names for job states (the ``job_status`` message's states, the
queue's ``queue_update`` states, the worker's ``job_report`` states, the worker's own
status, the worker's per-job state and the coordinator's ``QueuedJob.state``). They all
draw from :class:`JobState` now. Values are the strings already on the wire, so no
message changes; the message types keep their ``Literal`` subsets (what each message
may carry), and ``tests/test_protocol_job_state.py`` holds them equal to the sets here.

Mapping, by who speaks:

===============  =================================  =======================================
state            where it appears                   meaning
===============  =================================  =======================================
queued           queue_update, job_status, client   waiting in the coordinator's queue
dispatched       queue_update, QueuedJob            handed to a worker; client should offer
accepted         job_report, job_status             the worker took the dispatch
reserved         worker session                     worker held for one client, no package yet
receiving        worker session                     package and inputs arriving (wire: ``transferring``)
transferring     job_status                         the client-side name of ``receiving``
running          everywhere                         sleap-nn runs
stopping         job_status, worker session         stop-early asked; the run winds down
progress         job_report only                    an event of a running attempt, not a state
checkpoint       job_report only                    a relayed checkpoint, not a state
outbox           worker session                     results parked on the worker (wire: ``succeeded``)
results_ready    queue_update, QueuedJob            the coordinator's name of ``outbox``
succeeded        everywhere                         done, results delivered or waiting
acknowledged     worker session                     the owner confirmed the results; outbox copy gone
failed           everywhere                         ended without results
cancelled        everywhere                         cancelled or superseded
rejected         job_report only                    the worker refused a dispatch
===============  =================================  =======================================
"""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    RESERVED = "reserved"
    RECEIVING = "receiving"
    TRANSFERRING = "transferring"
    RUNNING = "running"
    STOPPING = "stopping"
    PROGRESS = "progress"
    CHECKPOINT = "checkpoint"
    OUTBOX = "outbox"
    RESULTS_READY = "results_ready"
    SUCCEEDED = "succeeded"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        """No further change: the job is over (results may still wait in an outbox)."""
        return self in FINAL_STATES


S = JobState

#: States a ``job_status`` message (worker → client) may carry.
PEER_STATES = frozenset({S.QUEUED, S.ACCEPTED, S.TRANSFERRING, S.RUNNING, S.STOPPING, S.SUCCEEDED, S.FAILED, S.CANCELLED})
#: States of a queued job at the coordinator (``queue_update``, ``QueuedJob.state``).
QUEUE_STATES = frozenset({S.QUEUED, S.DISPATCHED, S.RUNNING, S.RESULTS_READY, S.SUCCEEDED, S.FAILED, S.CANCELLED})
#: What a worker reports about an attempt (``job_report``).
REPORT_STATES = frozenset({S.ACCEPTED, S.RUNNING, S.PROGRESS, S.CHECKPOINT, S.SUCCEEDED, S.FAILED, S.REJECTED})
#: The life of one job on a worker (:class:`~sleap_rtc_plugin.worker.job_session.JobSession`).
SESSION_STATES = frozenset({S.RESERVED, S.RECEIVING, S.RUNNING, S.STOPPING, S.OUTBOX, S.ACKNOWLEDGED, S.FAILED, S.CANCELLED})
FINAL_STATES = frozenset({S.SUCCEEDED, S.ACKNOWLEDGED, S.FAILED, S.CANCELLED, S.REJECTED})

#: A worker session's state as a client reads it in ``job_status``.
_ON_THE_WIRE = {S.RESERVED: S.ACCEPTED, S.RECEIVING: S.TRANSFERRING, S.OUTBOX: S.SUCCEEDED, S.ACKNOWLEDGED: S.SUCCEEDED}


def wire_state(state: JobState) -> str:
    """The ``job_status`` string a client sees for a worker session in ``state``."""
    return _ON_THE_WIRE.get(state, state).value


__all__ = ["FINAL_STATES", "JobState", "PEER_STATES", "QUEUE_STATES", "REPORT_STATES", "SESSION_STATES", "wire_state"]
