"""Connections to a direct-path listener cannot buy unbounded OS threads (issue 13, item 11).

Each accepted direct-path connection gets a thread for its TLS handshake and then its
stream. Anyone who can reach a listener's port could open hundreds. Now the process
runs at most ``MAX_DIRECT_STREAMS`` per direction; past that a connection is closed at
once and a real sender falls back to the data channel, then uses the direct path again
once the flood is gone.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from fixtures_peer import make_file, open_pair
from sleap_rtc_plugin.peer import FastPaths
from sleap_rtc_plugin.peer import direct as direct_mod
from sleap_rtc_plugin.util.hashing import sha256_file

pytestmark = pytest.mark.timeout(120)

FLOOD = 24


def accept_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "sleap-rtc-direct-accept")


async def until(check, timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


async def test_connection_flood_is_capped_and_transfers_fall_back(tmp_path):
    on = FastPaths(direct=True, direct_timeout=2.0)
    client, worker = await open_pair(client_paths=on, worker_paths=on, secret=b"k")
    await worker.accept_files(tmp_path / "rx")
    identity = await asyncio.to_thread(direct_mod.TlsIdentity.generate)

    async def never(stream, offset, length):
        stream.close()

    listener = direct_mod.DirectListener("00" * 16, identity, never, handshake_timeout=10.0)
    await listener.start("127.0.0.1")
    flood: list[socket.socket] = []
    try:
        loop = asyncio.get_running_loop()
        for _ in range(FLOOD):
            s = socket.socket()
            s.setblocking(False)
            flood.append(s)
            await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", listener.port)), 10)
        cap = direct_mod.MAX_DIRECT_STREAMS
        assert await until(lambda: direct_mod.INCOMING.used == cap)
        await asyncio.sleep(0.3)
        assert accept_threads() <= cap, f"{accept_threads()} handshake threads for {FLOOD} connections"

        def refused() -> int:
            n = 0
            for s in flood:
                try:
                    n += s.recv(1) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    n += 1
            return n

        assert await until(lambda: refused() >= FLOOD - cap)

        src = make_file(tmp_path / "pkg.slp", 400_000)
        sent = await client.send_file(src)
        got = await worker.receive_file(timeout=20)
        assert sent.via == "datachannel" and "direct path unavailable" in sent.fallback
        assert sha256_file(got.path) == sha256_file(src)
    finally:
        for s in flood:
            s.close()
        listener.close()

    assert await until(lambda: direct_mod.INCOMING.used == 0)
    again = make_file(tmp_path / "pkg2.slp", 400_000)
    sent = await client.send_file(again)
    got = await worker.receive_file(timeout=20)
    assert sent.via == "direct" and sha256_file(got.path) == sha256_file(again)
    await client.close()
    await worker.close()
