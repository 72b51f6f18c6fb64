"""The one job-state vocabulary: every message's Literal draws from protocol/job_state.py."""

from __future__ import annotations

from typing import get_args, get_type_hints

import pytest

from sleap_rtc_plugin.protocol import peer, queue
from sleap_rtc_plugin.protocol.job_state import PEER_STATES, QUEUE_STATES, REPORT_STATES, SESSION_STATES, JobState, wire_state


@pytest.mark.parametrize("literal, states", [(peer.JobStatus, PEER_STATES), (queue.QueueUpdate, QUEUE_STATES), (queue.JobReport, REPORT_STATES)])
def test_message_states_are_the_shared_vocabulary(literal, states):
    allowed = get_args(get_type_hints(literal)["state"])
    assert set(allowed) == {s.value for s in states}


def test_every_worker_session_state_maps_to_a_job_status_a_client_accepts():
    for state in SESSION_STATES:
        assert wire_state(state) in {s.value for s in PEER_STATES}, state
    assert wire_state(JobState.OUTBOX) == "succeeded" and wire_state(JobState.RECEIVING) == "transferring"
    assert JobState("running") is JobState.RUNNING and JobState.RUNNING == "running" and f"{JobState.FAILED}" == "failed"


def test_the_coordinator_stores_only_queue_states():
    from sleap_rtc_plugin.coordinator import jobstore

    stored = {*jobstore.ACTIVE_STATES, jobstore.RESULTS_READY, *jobstore.FINAL_STATES, "queued"}
    assert stored == {s.value for s in QUEUE_STATES}
    assert all(type(s) is str for s in stored)  # plain strings: what sqlite binds and the wire carries
