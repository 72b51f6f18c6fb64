"""A job's real fate when its session ends badly (issue 20, item 3): the user's own Cancel is
no failure, a stopped worker is "the worker was stopped", a killed worker is "Worker lost"
(never "the job keeps running there"), and a worker still online is only a lost connection.

Real coordinator, real worker subprocesses, real sleap-nn on CPU, a real client over aiortc.
"""

from __future__ import annotations

import asyncio

import pytest

from fixtures_data import sample_labels, sample_root  # noqa: F401
from fixtures_queue_e2e import client_spec, qcoord, qroom, worker_process  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import submit_training
from sleap_rtc_plugin.client.connect import open_coordinator
from sleap_rtc_plugin.client.errors import RemoteError
from sleap_rtc_plugin.client.job_fate import WORKER_LOST, WORKER_STOPPED, cancelled_error, lost_link_error, presence_probe
from sleap_rtc_plugin.coordinator import CoordinatorClient
from sleap_rtc_plugin.gui.dialogs.errors import advice_for, describe, is_user_cancel


def test_a_cancel_is_the_users_only_when_they_asked():
    err = RemoteError("job_cancelled", "cancelled")
    mine = cancelled_error(err, cancel_requested=True, queued=False, worker="w1")
    assert mine.code == "cancelled" and is_user_cancel(mine)
    stopped = cancelled_error(err, cancel_requested=False, queued=False, worker="w1")
    assert stopped.code == WORKER_STOPPED and "w1" in stopped.message and "submit it again" in stopped.message
    assert not is_user_cancel(stopped)
    assert cancelled_error(err, cancel_requested=False, queued=True, worker="w1") is err  # the queue cancelled it: its own word
    other = RemoteError("disk_full", "x")
    assert cancelled_error(other, cancel_requested=True, queued=False, worker="w1") is other


async def test_lost_link_asks_the_coordinator_whether_the_worker_is_gone(qcoord, qroom):  # noqa: F811
    worker = CoordinatorClient(qcoord.url, room_id=qroom[0], token=qroom[1], role="worker", metadata={"name": "w1"})
    await worker.start()
    spec = client_spec(qcoord.url, qroom).resolved()
    probe = presence_probe(lambda: open_coordinator(spec), worker.peer_id)
    try:
        alive = await lost_link_error(ConnectionError("link closed"), probe, queued=False, worker="w1", job_id="j1", wait_s=0.3, poll_s=0.1)
        assert alive.code == "connection_lost" and "still online" in alive.message and "keeps running" in alive.message
    finally:
        await worker.close()
    gone = await lost_link_error(ConnectionError("link closed"), probe, queued=False, worker="w1", job_id="j1", wait_s=10, poll_s=0.1)
    assert gone.code == WORKER_LOST and "keeps running" not in gone.message and "submit it again" in gone.message
    queued = await lost_link_error(ConnectionError("x"), probe, queued=True, worker="w1", job_id="j1", wait_s=1, poll_s=0.1)
    assert "back in the queue" in queued.message

    async def unreachable():
        raise RemoteError("unreachable", "cannot reach the coordinator")

    unknown = await lost_link_error(ConnectionError("x"), unreachable, queued=False, worker="w1", job_id="j1", wait_s=1)
    assert unknown.code == "connection_lost" and "keeps running" not in unknown.message


async def _running(handle) -> None:
    async for event in handle.events():
        if event.kind == "progress" and event.data.get("event") == "epoch_end":
            return
    raise AssertionError("the job ended before its first epoch")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
async def test_a_worker_killed_or_stopped_mid_training_is_told_truthfully(how, qcoord, qroom, worker_process, sample_labels, tmp_path):  # noqa: F811
    proc = worker_process("w-fate", qcoord.url, qroom)
    spec = client_spec(qcoord.url, qroom)
    spec.auto_select = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    async with open_coordinator(spec.resolved()) as coord:
        while not await coord.discover(role="worker"):
            assert loop.time() < deadline, proc.output()
            await asyncio.sleep(0.2)
    package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=300)
    handle = submit_training(package, spec, project_dir=tmp_path / "project")
    await asyncio.wait_for(_running(handle), 300)
    if how == "sigkill":
        await asyncio.to_thread(proc.kill9)
    else:
        await asyncio.to_thread(proc.stop)
    with pytest.raises(RemoteError) as info:
        await asyncio.wait_for(handle.result(), 120)
    err = info.value
    if how == "sigkill":
        assert err.code == WORKER_LOST, err.message
        assert advice_for(err.code).title == "Worker lost"
    else:
        assert err.code == WORKER_STOPPED, err.message
        assert advice_for(err.code).title == "The worker was stopped"
    assert "keeps running" not in err.message and "submit it again" in err.message
    assert "--" not in describe(err)[1]
    assert not list((tmp_path / "project").glob("models/*"))
