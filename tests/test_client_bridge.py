"""SLEAP's LossViewer side of the ZMQ bridge, with real sockets bound as LossViewer binds them.

The test plays LossViewer: it *binds* SUB on publish_port and PUB on controller_port
(sleap/gui/widgets/monitor.py does exactly this) and decodes with jsonpickle as it
does. A remote training job's events must arrive there, and a Stop Early sent from
there must reach the worker's trainer.
"""

from __future__ import annotations

import asyncio

import jsonpickle
import pytest
import zmq

from fixtures_e2e import coordinator, cpu_worker, make_worker, project, room, spec_for  # noqa: F401
from fixtures_data import sample_labels, sample_root  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import submit_training
from sleap_rtc_plugin.client.zmq_bridge import LossViewerBridge


class FakeLossViewerSockets:
    """The two sockets of SLEAP's LossViewer, bound on free loopback ports and polled
    every few milliseconds from the event loop, as LossViewer polls them from a Qt timer.

    The polling matters: a ZMQ SUB sends its subscription only when its owner touches
    it, so a viewer that never polls would never receive anything.
    """

    def __init__(self):
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.subscribe(b"")
        self.publish_port = self.sub.bind_to_random_port("tcp://127.0.0.1")
        self.ctrl = self.ctx.socket(zmq.PUB)
        self.controller_port = self.ctrl.bind_to_random_port("tcp://127.0.0.1")
        self.messages: asyncio.Queue[dict] = asyncio.Queue()
        self._timer = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        while True:
            while self.sub.poll(0, zmq.POLLIN):
                msg = jsonpickle.decode(self.sub.recv_string())
                if msg.get("event") != "probe":  # LossViewer ignores the bridge's probes too
                    self.messages.put_nowait(msg)
            await asyncio.sleep(0.005)

    async def next_message(self, timeout: float = 60.0) -> dict:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def press_stop_early(self) -> None:
        self.ctrl.send_string(jsonpickle.encode(dict(command="stop")))

    async def close(self) -> None:
        self._timer.cancel()
        await asyncio.gather(self._timer, return_exceptions=True)
        self.sub.close(0)
        self.ctrl.close(0)
        self.ctx.term()


@pytest.fixture
async def viewer():
    sockets = FakeLossViewerSockets()
    yield sockets
    await sockets.close()


async def test_bridge_announces_a_missed_train_begin_and_forwards_stop(viewer):
    stops = []
    async with LossViewerBridge(viewer.publish_port, viewer.controller_port, on_stop=lambda: stops.append(1)) as bridge:
        await bridge.publish({"what": "centroid", "event": "epoch_end", "epoch": 3, "logs": {"train/loss": 0.5}})
        first, second = await viewer.next_message(), await viewer.next_message()
        assert (first["event"], first["what"]) == ("train_begin", "centroid")
        assert second["logs"]["train/loss"] == 0.5
        for _ in range(20):
            await viewer.press_stop_early()
            await asyncio.sleep(0.1)
            if stops:
                break
        assert stops and bridge.stop_requests >= 1


@pytest.mark.slow
async def test_remote_training_draws_in_loss_viewer_and_stop_early_reaches_worker(cpu_worker, project, sample_labels, tmp_path, viewer):  # noqa: F811
    package = sample_data.make_training_package(sample_labels, tmp_path / "long", epochs=200)
    handle = submit_training(package, spec_for(cpu_worker), project_dir=project,
                             publish_port=viewer.publish_port, controller_port=viewer.controller_port)
    seen = []
    while True:
        msg = await viewer.next_message(timeout=120)
        seen.append(msg["event"])
        if msg["event"] == "epoch_end":
            break
    assert seen[0] == "train_begin"
    assert "train/loss" in msg["logs"] or "val/loss" in msg["logs"]

    for _ in range(50):
        await viewer.press_stop_early()
        await asyncio.sleep(0.2)
        if cpu_worker.job is None or cpu_worker.job.state == "stopping":
            break
    outcome = await asyncio.wait_for(handle.result(), 180)
    assert (outcome.model_dirs[0] / "best.ckpt").is_file()
    ends = 1
    while True:
        try:
            msg = await viewer.next_message(timeout=0.5)
        except asyncio.TimeoutError:
            break
        ends += msg["event"] == "epoch_end"
    assert ends < 100
