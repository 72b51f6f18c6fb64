"""Issue 19 item 3: the client's receipt of the verified results is the source of truth.

A worker's ``succeeded`` report can be lost (the worker cannot reach the coordinator
within its patience): the coordinator then requeues the job -- maybe even dispatches it
again -- although the client already holds the model. The client's ``results_received``
for that earlier attempt must end the job ``succeeded`` at once: no second training
(nothing is dispatched again; a later attempt is fenced off) and nothing more to install.
"""

from __future__ import annotations

import asyncio

import pytest
from fixtures_queue import GRACE, LEASE, gpu, peer, qroom, qserver  # noqa: F401

from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorError

SPEC = {"kind": "train", "package": "labels.slp.training_job.zip"}


def state_is(state: str):
    return lambda m: m.state == state


async def run_attempt_then_go_silent(client: CoordinatorClient, worker: CoordinatorClient) -> None:
    """Attempt 1 runs on ``worker``, which then drops off before its ``succeeded`` arrives."""
    await client.queue_submit("job", SPEC)
    assert (await worker.next_push("job_dispatch", timeout=10)).attempt == 1
    await worker.report("job", 1, "accepted")
    await worker.update(status="busy")
    await worker.report("job", 1, "running")
    await worker.close()  # its succeeded report never reaches the coordinator
    requeued = await client.next_push("queue_update", job_id="job", timeout=LEASE + GRACE + 20, where=state_is("queued"))
    assert "went silent" in requeued.message


async def test_results_of_a_requeued_attempt_end_the_job_without_a_second_training(qserver, peer):
    w1 = await peer("worker", peer_id="w1", metadata=gpu(8_000))
    client = await peer("client", peer_id="c1")
    await run_attempt_then_go_silent(client, w1)

    await client.client_report("job", 1, "results_received")  # the client fetched attempt 1's model
    done = await client.next_push("queue_update", job_id="job", timeout=10, where=state_is("succeeded"))
    assert "attempt 1" in done.message and "w1" in done.message
    assert "job" not in qserver.queue.jobs
    record = await qserver.jobstore.get_job("job")
    assert (record.state, record.attempt) == ("succeeded", 1)

    w2 = await peer("worker", peer_id="w2", metadata=gpu(8_000))  # a free worker appears...
    with pytest.raises(TimeoutError):
        await w2.next_push("job_dispatch", timeout=LEASE + GRACE)  # ...and gets no second training
    await client.client_report("job", 1, "results_received")  # a repeated confirmation is fine


async def test_results_of_an_earlier_attempt_end_the_job_and_fence_the_later_one(qserver, peer):
    w1 = await peer("worker", peer_id="w1", metadata=gpu(8_000))
    client = await peer("client", peer_id="c1")
    w2 = await peer("worker", peer_id="w2", metadata=gpu(8_000), status="busy")  # not free until w1 is gone
    await run_attempt_then_go_silent(client, w1)
    await w2.update(status="available")
    assert (await w2.next_push("job_dispatch", timeout=10)).attempt == 2
    await w2.report("job", 2, "accepted")
    await w2.report("job", 2, "running")

    await client.client_report("job", 1, "results_received")  # attempt 1's model is here after all
    await client.next_push("queue_update", job_id="job", timeout=10, where=state_is("succeeded"))
    for state in ("progress", "succeeded"):  # attempt 2 is fenced: its worker is told to stop
        with pytest.raises(CoordinatorError) as err:
            await w2.report("job", 2, state)
        assert err.value.code in ("stale_attempt", "unknown_job")
    await asyncio.sleep(0.3)
    assert qserver.queue.holding(w2.room_id, "w2") is None
    assert (await qserver.jobstore.get_job("job")).state == "succeeded"
