"""One coordinator exchange under asyncio debug mode (what ``PYTHONASYNCIODEBUG=1`` turns on).

Debug mode logs every callback that holds the loop longer than ``slow_callback_duration``
and every task garbage-collected while still pending. A real coordinator and real
clients go through registration, discovery, a relay with an async handler, a queued job
from dispatch to results, and a worker-token takeover (the old socket is closed by a
background task); the test fails on any slow callback, any task left running after
everything is closed, and any "never retrieved"/"never awaited" complaint.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings

from fixtures_coordinator import live_coordinator
from fixtures_queue import enroll, gpu

from sleap_rtc_plugin.coordinator import CoordinatorClient

#: A callback holding the loop longer than this fails the test. asyncio's own default is
#: 0.1 s; this leaves room for a loaded CI machine and still catches blocking disk work.
SLOW_CALLBACK_S = 0.25
SPEC = {"kind": "train", "package": "labels.slp.training_job.zip"}
COMPLAINTS = ("Task was destroyed but it is pending", "exception was never retrieved", "was never awaited")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def _exchange(tmp_path) -> list[asyncio.Task]:
    asyncio.get_running_loop().slow_callback_duration = SLOW_CALLBACK_S
    async with live_coordinator(tmp_path) as server:
        room_id, token, _ = await server.create_room()
        worker_token = await enroll(server, room_id, "w1")

        def make(role: str, tok: str, **kw) -> CoordinatorClient:
            return CoordinatorClient(server.url, room_id=room_id, token=tok, role=role, backoff_initial=0.05, backoff_max=0.3, **kw)  # type: ignore[arg-type]

        worker = make("worker", worker_token, peer_id="w1", metadata=gpu(8_000))
        client = make("client", token)
        seen: list[str] = []

        async def on_relay(relay) -> None:
            await asyncio.sleep(0)
            seen.append(relay.kind)

        worker.add_relay_handler(on_relay)
        await worker.start()
        await client.start()
        assert [p.peer_id for p in await client.discover()] == ["w1"]
        await client.relay("w1", "offer", {"sdp": "v=0", "type": "offer"})
        await worker.next_relay("offer", timeout=10)

        await client.queue_submit("job", SPEC)
        dispatch = await worker.next_push("job_dispatch", timeout=10)
        for state in ("accepted", "running", "succeeded"):
            await worker.report("job", dispatch.attempt, state)
        await client.next_push("queue_update", job_id="job", timeout=10, where=lambda m: m.state == "results_ready")

        restarted = make("worker", worker_token, peer_id="w1", metadata=gpu(8_000), reconnect=False)
        await restarted.start()  # takes the id over; the old socket is told and closed
        for c in (restarted, client, worker):
            await c.close()
        assert seen == ["offer"]
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


def test_coordinator_exchange_is_clean_under_asyncio_debug(tmp_path):
    records = _Records()
    asyncio_log = logging.getLogger("asyncio")
    old_level = asyncio_log.level
    asyncio_log.addHandler(records)
    asyncio_log.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            with asyncio.Runner(debug=True) as runner:
                leaked = runner.run(_exchange(tmp_path))
            gc.collect()
    finally:
        asyncio_log.removeHandler(records)
        asyncio_log.setLevel(old_level)
    assert not leaked, f"tasks still running after the server and every client closed: {leaked}"
    slow = [line for line in records.lines if line.startswith("Executing ") and " took " in line]
    assert not slow, f"callbacks held the loop over {SLOW_CALLBACK_S}s: {slow}"
    complaints = [line for line in records.lines + [str(w.message) for w in caught] if any(c in line for c in COMPLAINTS)]
    assert not complaints, complaints
