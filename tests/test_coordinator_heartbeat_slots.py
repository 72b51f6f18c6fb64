"""Heartbeats spread over the interval (``coordinator/heartbeat.py``).

The slots must keep the old guarantee -- every connection is visited exactly once per
interval, whatever joins and leaves in between -- while no longer pinging every
connection in the same instant. The first property is checked against a model on
random join/leave sequences; the second on a real coordinator, by the ``ts`` the
server stamps on each ping (one per tick): one burst would stamp them all alike.
"""

from __future__ import annotations

import asyncio
import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from sleap_rtc_plugin.coordinator.heartbeat import SLOTS, HeartbeatSlots
from fixtures_coordinator import coordinator, live_coordinator, make_client, room  # noqa: F401

ops = st.lists(st.one_of(st.tuples(st.just("join"), st.integers(0, 40)), st.tuples(st.just("leave"), st.integers(0, 40)), st.tuples(st.just("tick"), st.just(0))), max_size=200)


@settings(max_examples=200, deadline=None)
@given(slots=st.integers(1, 7), ops=ops)
def test_every_connection_is_visited_once_per_round_at_a_fixed_phase(slots, ops):
    beats: HeartbeatSlots[int] = HeartbeatSlots(slots)
    live: set[int] = set()
    last_visit: dict[int, int] = {}
    tick = 0
    for op, item in ops:
        if op == "join":
            beats.add(item)
            live.add(item)
        elif op == "leave":
            beats.discard(item)
            live.discard(item)
            last_visit.pop(item, None)
        else:
            due = beats.due(tick)
            assert len(due) == len(set(due))
            assert set(due) <= live  # never a connection that left
            for item in due:
                if item in last_visit:  # the next visit is exactly one round later
                    assert tick - last_visit[item] == slots
                last_visit[item] = tick
            tick += 1
    assert len(beats) == len(live)
    # A full round from here visits every live connection exactly once.
    seen = [item for t in range(tick, tick + slots) for item in beats.due(t)]
    assert sorted(seen) == sorted(live)


def test_slots_fill_evenly_as_connections_arrive():
    beats: HeartbeatSlots[int] = HeartbeatSlots(SLOTS)
    for i in range(SLOTS * 7 + 3):
        beats.add(i)
        beats.add(i)  # adding twice changes nothing
    sizes = [len(beats.due(t)) for t in range(SLOTS)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == SLOTS * 7 + 3


async def test_pings_of_one_interval_are_spread_over_it_and_reach_everyone(tmp_path):
    async with live_coordinator(tmp_path, heartbeat_interval=0.4, heartbeat_timeout=2.0) as server:
        sockets = [await connect(server.url, ping_interval=None) for _ in range(2 * SLOTS)]
        try:
            async def first_ping(ws) -> float:
                async with asyncio.timeout(5):
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame["type"] == "ping":
                            return frame["ts"]

            stamps = await asyncio.gather(*(first_ping(ws) for ws in sockets))
        finally:
            for ws in sockets:
                await ws.close()
    assert len(stamps) == 2 * SLOTS  # everyone was pinged within the first interval or so
    # One burst would stamp every ping alike; spread pings come from SLOTS ticks.
    assert len(set(stamps)) >= SLOTS // 2


async def test_a_busy_event_loop_does_not_stretch_the_gap_between_pings(tmp_path):
    """Every sleep overshoots on a busy loop; ticks at fixed times keep a link's pings one interval apart
    (ten overshoots a round, added up, had stretched the gap past a test client's 1 s patience)."""
    interval = 0.3

    async def hog() -> None:  # another part of the process holding the loop 50 ms at a time
        while True:
            time.sleep(0.05)
            await asyncio.sleep(0)

    async with live_coordinator(tmp_path, heartbeat_interval=interval, heartbeat_timeout=10.0) as server:
        ws = await connect(server.url, ping_interval=None)
        busy = asyncio.create_task(hog())
        arrivals: list[float] = []
        try:
            async with asyncio.timeout(8.0):
                while len(arrivals) < 9:
                    if json.loads(await ws.recv())["type"] == "ping":
                        arrivals.append(time.monotonic())
        finally:
            busy.cancel()
            await ws.close()
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:]))
    assert gaps[len(gaps) // 2] < 1.25 * interval and gaps[-1] < 2.5 * interval, gaps


async def test_a_stalled_coordinator_process_does_not_drop_its_peers_for_its_own_stall(tmp_path):
    """A process stalled past the heartbeat timeout (a pause, a long GC) has not heard its peers because it
    was not listening: it pings again and gives them an interval to answer before judging anyone silent."""
    async with live_coordinator(tmp_path, heartbeat_interval=0.3, heartbeat_timeout=1.5) as server:
        ws = await connect(server.url, ping_interval=None)

        async def answer_pings() -> None:
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong", "ts": frame["ts"]}))

        answering = asyncio.create_task(answer_pings())
        try:
            await asyncio.sleep(0.6)  # answered a couple of pings
            time.sleep(2.0)  # the whole process stalls past the 1.5 s timeout
            await asyncio.sleep(1.0)
            assert not answering.done(), answering  # the peer's socket was not dropped
            assert ws.state.name == "OPEN"
        finally:
            answering.cancel()
            await ws.close()


async def test_a_stalled_client_process_reads_what_arrived_before_giving_up_on_the_coordinator(make_client):
    """Past its silence limit only because its own process stalled, a client reads the frames waiting for it
    (a short grace) instead of reconnecting: the coordinator was never silent."""
    client = await make_client()
    await asyncio.sleep(0.6)
    time.sleep(1.3)  # past the client's 1 s of patience, within the coordinator's 1.5 s timeout
    await asyncio.sleep(1.0)
    assert client.reconnects == 0
