"""Peer file-transfer benchmark: every transfer path vs. the original sleap-rtc scheme and a plain TCP socket.

    python benchmarks/transfer.py --size-mb 1000 --slow-size-mb 100 --json [--profile]

The data-channel rows (``ours``, ``baseline``) run at ``--slow-size-mb`` (aiortc moves
~5-10 MB/s, a 1 GB baseline row takes minutes); every other row at ``--size-mb``.
Ratios compare MB/s against the ``baseline`` and ``tcp`` rows of the same run.

Each scheme runs in its own subprocess (both peers in it, on loopback) so peak RSS
is per scheme. Reported per scheme: MB/s, wall and CPU seconds of the transfer,
peak RSS growth over the post-import baseline, and connection setup time.

- ``ours``: connect/accept + PSK authentication + ``send_file`` (SHA-256 on both
  ends, .part + atomic rename, event-driven flow control, 64 KiB chunks).
- ``baseline``: the original sleap-rtc scheme -- whole file read into memory,
  64 KiB chunks, poll ``bufferedAmount`` < 16 MiB every 0.1 s, receiver writes chunks.
- ``tcp``: asyncio streams over 127.0.0.1, 64 KiB reads; the ceiling on this machine.
- ``direct``: as ``ours`` with the direct TLS path enabled (``FastPaths(direct=True)``).
- ``shared``: as ``ours`` with a ``transfer.shared_paths`` mapping between two folder
  names for the same storage: the receiver copies and verifies, no bytes on the link.
- ``cache``: the same file submitted a second time (first send not timed): nothing moves.

``mb_per_s`` is file size over the whole timed section (for ours/direct/shared/cache:
``send_file`` including the sender's SHA-256 and the receiver's verification);
``transfer_mb_per_s`` is ``SentFile.mb_per_s`` (after the sender's hash).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("ours", "baseline", "tcp", "direct", "shared", "cache")
SLOW_MODES = ("ours", "baseline")


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _pair(fastpaths=None):
    from sleap_rtc_plugin.peer import accept, connect

    holder = {}

    async def send_offer(offer):
        answer, holder["task"] = await accept(offer, role="worker", peer_id="w", allow_loopback=True, fastpaths=fastpaths)
        return answer

    t0 = time.perf_counter()
    client = await connect(send_offer, role="client", peer_id="c", allow_loopback=True, fastpaths=fastpaths)
    worker = await holder["task"]
    return client, worker, time.perf_counter() - t0


async def run_ours(src: Path, out: Path) -> dict:
    client, worker, setup = await _pair()
    t0 = time.perf_counter()
    await asyncio.gather(client.authenticate(b"bench-secret"), worker.authenticate(b"bench-secret"))
    auth_s = time.perf_counter() - t0
    worker.accept_files(out)
    sent = await client.send_file(src)
    assert not sent.cached
    await client.close()
    await worker.close()
    return {"setup_s": setup, "auth_s": auth_s}


async def _fast(src: Path, out: Path, fastpaths, *, repeat: bool = False) -> tuple[dict, float]:
    """Run one fast-path send; returns (extra fields, seconds of the timed send)."""
    client, worker, setup = await _pair(fastpaths)
    await asyncio.gather(client.authenticate(b"bench-secret"), worker.authenticate(b"bench-secret"))
    worker.accept_files(out)
    if repeat:
        await client.send_file(src)
        await worker.receive_file()
    t0 = time.perf_counter()
    sent = await client.send_file(src, name=src.name + (".again" if repeat else ""))
    seconds = time.perf_counter() - t0
    await worker.receive_file()
    await client.close()
    await worker.close()
    extra = {"setup_s": setup, "via": sent.via, "bytes_sent": sent.bytes_sent, "transfer_mb_per_s": round(sent.mb_per_s, 2)}
    if sent.fallback:
        extra["fallback"] = sent.fallback
    return extra, seconds


async def run_direct(src: Path, out: Path) -> dict:
    from sleap_rtc_plugin.peer import FastPaths

    return await _fast(src, out, FastPaths(direct=True))


async def run_shared(src: Path, out: Path) -> dict:
    from sleap_rtc_plugin.peer import FastPaths

    worker_view = out / "worker-view-of-share"
    worker_view.symlink_to(src.parent, target_is_directory=True)
    mapping = ((str(src.parent), str(worker_view)),)
    return await _fast(src, out, FastPaths(direct=False, shared_paths=mapping))


async def run_cache(src: Path, out: Path) -> dict:
    from sleap_rtc_plugin.peer import FastPaths

    return await _fast(src, out, FastPaths(direct=True), repeat=True)


async def run_baseline(src: Path, out: Path) -> dict:
    from aiortc import RTCConfiguration, RTCPeerConnection

    from sleap_rtc_plugin.peer.ice import enable_loopback_candidates

    enable_loopback_candidates()
    t0 = time.perf_counter()
    a, b = RTCPeerConnection(RTCConfiguration(iceServers=[])), RTCPeerConnection(RTCConfiguration(iceServers=[]))
    ch = a.createDataChannel("bench")
    opened, done = asyncio.Event(), asyncio.Event()
    ch.on("open", opened.set)
    sink = open(out / src.name, "wb")

    @b.on("datachannel")
    def _dc(channel):
        @channel.on("message")
        def _msg(m):
            if m == "END":
                sink.close()
                done.set()
            elif isinstance(m, bytes):
                sink.write(m)

    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await opened.wait()
    setup = time.perf_counter() - t0
    data = src.read_bytes()  # the original reads the whole file into memory
    for i in range(0, len(data), 64 * 1024):
        while ch.bufferedAmount > 16 * 1024 * 1024:
            await asyncio.sleep(0.1)
        ch.send(data[i : i + 64 * 1024])
    ch.send("END")
    await done.wait()
    await a.close()
    await b.close()
    return {"setup_s": setup}


async def run_tcp(src: Path, out: Path) -> dict:
    done = asyncio.Event()

    async def handle(reader, writer):
        with open(out / src.name, "wb") as fh:
            while chunk := await reader.read(256 * 1024):
                fh.write(chunk)
        writer.close()
        done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    setup = time.perf_counter() - t0
    with open(src, "rb") as fh:
        while chunk := fh.read(64 * 1024):
            writer.write(chunk)
            await writer.drain()
    writer.close()
    await writer.wait_closed()
    await done.wait()
    server.close()
    return {"setup_s": setup}


def child(mode: str, src: Path, profile: bool) -> dict:
    import aiortc  # noqa: F401  (import cost outside the measurement)

    import sleap_rtc_plugin.peer  # noqa: F401

    runner = {"ours": run_ours, "baseline": run_baseline, "tcp": run_tcp, "direct": run_direct, "shared": run_shared, "cache": run_cache}[mode]
    with tempfile.TemporaryDirectory() as tmp:
        rss0 = _rss_mb()
        prof = cProfile.Profile() if profile else None
        cpu0, t0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        extra = asyncio.run(runner(src, Path(tmp)))
        if prof:
            prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if isinstance(extra, tuple):  # fast paths time only the send itself (setup/auth reported apart)
            extra, wall = extra
        size = src.stat().st_size
        received = next(p for p in Path(tmp).rglob(src.name + "*") if ".sleap-rtc" not in str(p) and "worker-view" not in str(p))
        assert received.stat().st_size == size, "incomplete transfer"
    result = {
        "mode": mode,
        "size_mb": size / 1e6,
        "wall_s": round(wall, 3),
        "mb_per_s": round(size / 1e6 / wall, 2),
        "cpu_s": round(cpu, 3),
        "peak_rss_growth_mb": round(_peak_rss_mb() - rss0, 1),
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in extra.items()},
    }
    if prof:
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
        result["profile_top_tottime"] = [
            {"func": f"{Path(f[0]).name}:{f[1]}:{f[2]}", "tottime_s": round(v[2], 3), "calls": v[1]} for f, v in top
        ]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=50, help="payload for tcp/direct/shared/cache")
    parser.add_argument("--slow-size-mb", type=float, default=None, help="payload for the data-channel rows (ours, baseline); default --size-mb")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--profile", action="store_true", help="add cProfile top functions per scheme")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.file), args.profile)))
        return 0
    results = {}
    slow_mb = args.slow_size_mb if args.slow_size_mb is not None else args.size_mb
    with tempfile.TemporaryDirectory() as tmp:
        payloads = {}
        for label, mb in (("fast", args.size_mb), ("slow", slow_mb)):
            src = Path(tmp) / label / "payload.bin"
            src.parent.mkdir()
            with open(src, "wb") as fh:
                for _ in range(int(mb * 1e6) // 1_000_000):
                    fh.write(os.urandom(1_000_000))
            payloads[label] = src
        for mode in args.modes.split(","):
            src = payloads["slow" if mode in SLOW_MODES else "fast"]
            cmd = [sys.executable, __file__, "--child", mode, "--file", str(src)] + (["--profile"] if args.profile else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                results[mode] = {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
            else:
                results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = results.get("baseline", {}).get("mb_per_s")
    ceiling = results.get("tcp", {}).get("mb_per_s")
    for r in results.values():
        if "mb_per_s" in r:
            if base:
                r["x_baseline"] = round(r["mb_per_s"] / base, 1)
            if ceiling:
                r["x_tcp"] = round(r["mb_per_s"] / ceiling, 3)
    import aiortc

    report = {
        "size_mb": args.size_mb,
        "slow_size_mb": slow_mb,
        "python": sys.version.split()[0],
        "aiortc": aiortc.__version__,
        "cpus": os.cpu_count(),
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for mode, r in results.items():
            print(
                f"{mode:9s} {r.get('size_mb', '-'):>7} MB {r.get('mb_per_s', '-'):>8} MB/s  x{r.get('x_baseline', '-')} baseline  "
                f"x{r.get('x_tcp', '-')} tcp  via {r.get('via', '-')}  cpu {r.get('cpu_s', '-')} s  peak+{r.get('peak_rss_growth_mb', '-')} MB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
