"""Large SCTP packets + fewer SACKs on the data channel, between two real aiortc peers on loopback.

Packet sizes are observed on each peer's own DTLS transport (what SCTP hands down
to be encrypted), so "standard packets" means no SCTP packet above aiortc's 1,189 bytes.
"""

from __future__ import annotations

import asyncio

import aiortc
import pytest
from aiortc import rtcsctptransport

from fixtures_peer import flip_byte_in_frame, make_file, open_pair
from sleap_rtc_plugin.peer import FastPaths, TransferError
from sleap_rtc_plugin.peer import sctp_tuning
from sleap_rtc_plugin.util.hashing import sha256_file

pytestmark = pytest.mark.timeout(300)

TUNED = FastPaths(direct=False, sctp=True)
PLAIN = FastPaths(direct=False, sctp=False)
STANDARD_MAX = sctp_tuning.STANDARD_PACKET


def sha(path) -> str:
    return sha256_file(path)


def watch_packets(link) -> list[int]:
    """Record the size of every SCTP packet this peer sends (instance-level wrapper, this link only)."""
    sizes: list[int] = []
    dtls = link.transport.pc.sctp.transport
    original = dtls._send_data

    async def _send_data(data: bytes) -> None:
        sizes.append(len(data))
        await original(data)

    dtls._send_data = _send_data
    return sizes


async def open_links(client_paths, worker_paths, *, before_auth=None):
    return await open_pair(client_paths=client_paths, worker_paths=worker_paths, before_auth=before_auth, secret=b"k")


@pytest.fixture
async def links():
    made = []

    async def make(client_paths=TUNED, worker_paths=TUNED, **kw):
        client, worker = await open_links(client_paths, worker_paths, **kw)
        made.extend([client, worker])
        return client, worker

    yield make
    for link in made:
        await link.close()


async def round_trip(client, worker, src, tmp_path):
    rx = await worker.accept_files(tmp_path / "rx")
    sent = await client.send_file(src)
    got = await worker.receive_file(timeout=120)
    assert got.sha256 == sent.sha256 == sha(src) == sha(got.path)
    return rx, sent


async def test_both_tuned_large_packets_sha_verified(links, tmp_path):
    client, worker = await links()
    assert "sctp16k" in client.remote_features and "sctp16k" in worker.remote_features
    assert client.transport.large_packets and worker.transport.large_packets
    sent_sizes = watch_packets(client)
    src = make_file(tmp_path / "pkg.slp", 6 * 1024 * 1024 + 77)
    _, sent = await round_trip(client, worker, src, tmp_path)
    assert sent.via == "datachannel"
    assert max(sent_sizes) > STANDARD_MAX
    assert max(sent_sizes) <= sctp_tuning.DTLS_RECORD_LIMIT
    assert rtcsctptransport.USERDATA_MAX_LENGTH < 1200  # aiortc's module constant untouched


async def test_sacks_are_delayed_on_a_tuned_link(links, tmp_path):
    client, worker = await links()
    worker_sizes = watch_packets(worker)
    client_sizes = watch_packets(client)
    await round_trip(client, worker, make_file(tmp_path / "f", 4 * 1024 * 1024), tmp_path)
    large = sum(1 for n in client_sizes if n > STANDARD_MAX)
    sacks = sum(1 for n in worker_sizes if n < 100)
    assert large > 100
    assert sacks < large / 2


async def test_tuned_peer_with_plain_peer_keeps_standard_packets(links, tmp_path):
    client, worker = await links(TUNED, PLAIN)
    assert "sctp16k" not in client.remote_features
    assert not client.transport.large_packets and not worker.transport.large_packets
    assert not sctp_tuning.is_prepared(worker.transport.pc.sctp)  # the plain side runs aiortc untouched
    client_sizes, worker_sizes = watch_packets(client), watch_packets(worker)
    await round_trip(client, worker, make_file(tmp_path / "a", 3 * 1024 * 1024 + 5), tmp_path)
    assert max(client_sizes) <= STANDARD_MAX and max(worker_sizes) <= STANDARD_MAX
    # and the other direction, the plain peer sending to the tuned-capable one
    src = make_file(tmp_path / "b", 2 * 1024 * 1024 + 9)
    await client.accept_files(tmp_path / "rx_client")
    sent = await worker.send_file(src)
    got = await client.receive_file(timeout=120)
    assert sha(got.path) == sent.sha256 == sha(src)
    assert max(worker_sizes) <= STANDARD_MAX


async def test_tuning_is_per_link(links, tmp_path):
    tuned_client, tuned_worker = await links()
    plain_client, plain_worker = await links(TUNED, PLAIN)
    plain_sizes = watch_packets(plain_client)
    tuned_sizes = watch_packets(tuned_client)
    src = make_file(tmp_path / "x", 2 * 1024 * 1024)
    await asyncio.gather(round_trip(tuned_client, tuned_worker, src, tmp_path / "t"), round_trip(plain_client, plain_worker, src, tmp_path / "p"))
    assert max(tuned_sizes) > STANDARD_MAX
    assert max(plain_sizes) <= STANDARD_MAX
    assert "_send" not in vars(plain_client.transport.pc.sctp)


async def test_other_aiortc_version_is_a_noop(links, tmp_path, monkeypatch):
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    assert not sctp_tuning.supported()
    client, worker = await links()
    assert "sctp16k" not in client.remote_features and "sctp16k" not in worker.remote_features
    sizes = watch_packets(client)
    await round_trip(client, worker, make_file(tmp_path / "v", 1024 * 1024), tmp_path)
    assert max(sizes) <= STANDARD_MAX


async def test_path_dropping_large_datagrams_keeps_standard_packets(links, tmp_path, monkeypatch):
    monkeypatch.setattr(sctp_tuning, "PROBE_TIMEOUT", 0.3)

    def drop_large(client, worker):
        ice = worker.transport.pc.sctp.transport.transport
        original = ice._send

        async def _send(data: bytes) -> None:
            if len(data) <= 1500:
                await original(data)

        ice._send = _send

    client, worker = await links(before_auth=drop_large)
    assert "sctp16k" in client.remote_features  # both announced ...
    assert not client.transport.large_packets and not worker.transport.large_packets  # ... but the probe failed
    sizes = watch_packets(client)
    await round_trip(client, worker, make_file(tmp_path / "d", 2 * 1024 * 1024), tmp_path)
    assert max(sizes) <= STANDARD_MAX


async def test_tampered_chunk_detected_on_tuned_link(links, tmp_path):
    client, worker = await links()
    assert client.transport.large_packets
    rx = await worker.accept_files(tmp_path / "rx")
    src = make_file(tmp_path / "data", 3 * 1024 * 1024)
    client.transport.outgoing_filter = flip_byte_in_frame(3)
    with pytest.raises(TransferError) as err:
        await client.send_file(src)
    assert err.value.code == "hash_mismatch"
    assert rx.cached_path(sha(src)) is None
    client.transport.outgoing_filter = None
    sent = await client.send_file(src)
    assert sha((await worker.receive_file(timeout=60)).path) == sent.sha256 == sha(src)


async def test_corrupted_and_lost_datagrams_are_retransmitted_on_tuned_link(links, tmp_path):
    """A large packet altered on the wire fails DTLS and is dropped; one is lost outright:
    delayed SACKs must still report the gap and the file must arrive intact."""
    client, worker = await links()
    ice = client.transport.pc.sctp.transport.transport
    original = ice._send
    seen = 0

    async def _send(data: bytes) -> None:
        nonlocal seen
        if len(data) > STANDARD_MAX:
            seen += 1
            if seen == 40:
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            elif seen == 90:
                return
        await original(data)

    ice._send = _send
    await round_trip(client, worker, make_file(tmp_path / "r", 4 * 1024 * 1024), tmp_path)
    assert seen > 90
