"""Connection setup stages and their errors, with real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
import re

import aioice.ice
import pytest

from fixtures_peer import open_pair
from sleap_rtc_plugin.peer import ChannelTimeoutError, IceFailedError, NoAnswerError, accept, connect
from sleap_rtc_plugin.peer.ice import enable_loopback_candidates

pytestmark = pytest.mark.timeout(120)


def test_loopback_seam_adds_127_0_0_1():
    enable_loopback_candidates()
    enable_loopback_candidates()  # idempotent
    addresses = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    assert addresses.count("127.0.0.1") == 1


async def test_pair_opens_with_distinct_fingerprints_and_fast_setup():
    client, worker = await open_pair()
    try:
        assert client.remote_fingerprint == worker.local_fingerprint
        assert worker.remote_fingerprint == client.local_fingerprint
        assert client.local_fingerprint != worker.local_fingerprint
        assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", client.local_fingerprint)
    finally:
        await client.close()
        await worker.close()
    assert client.closed.is_set()
    await asyncio.wait_for(worker.closed.wait(), 30)


async def test_no_answer_times_out_with_clear_error():
    async def never_answers(offer):
        await asyncio.sleep(60)

    with pytest.raises(NoAnswerError) as err:
        await connect(never_answers, timeout=0.5, allow_loopback=True)
    assert err.value.stage == "answer" and "no answer" in str(err.value)


def dead(sdp: str) -> str:
    """Point every candidate at a port where nothing listens, both ways."""
    return re.sub(r"(a=candidate:\S+ \d+ udp \d+ )\S+ \d+", r"\g<1>127.0.0.1 9", sdp)


async def test_unreachable_candidates_fail_at_ice_stage():
    worker_task = None

    async def answer_with_dead_candidates(offer):
        nonlocal worker_task
        answer, worker_task = await accept({**offer, "sdp": dead(offer["sdp"])}, timeout=3, allow_loopback=True)
        return {**answer, "sdp": dead(answer["sdp"])}

    with pytest.raises(IceFailedError) as err:
        await connect(answer_with_dead_candidates, timeout=3, allow_loopback=True)
    assert err.value.stage == "ice"
    with pytest.raises((IceFailedError, ChannelTimeoutError)):
        await worker_task


async def test_bad_answer_payload_is_a_clear_error():
    async def garbage(offer):
        return {"type": "offer"}

    with pytest.raises(Exception, match="expected an SDP answer payload"):
        await connect(garbage, timeout=5, allow_loopback=True)


async def test_idle_link_closes_itself():
    client, worker = await open_pair()
    try:
        # the client stops sending keepalives; the worker notices the silence
        client._keepalive_task.cancel()
        worker.keepalive_interval = 0.1
        worker.idle_timeout = 0.5
        worker._keepalive_task.cancel()
        worker._keepalive_task = asyncio.ensure_future(worker._keepalive())
        await asyncio.wait_for(worker.closed.wait(), 20)
        assert "silent" in worker.close_reason
    finally:
        await client.close()
        await worker.close()
