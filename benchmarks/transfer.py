"""Peer file-transfer benchmark: every transfer path vs. the original sleap-rtc scheme and a plain TCP socket.

    python benchmarks/transfer.py --size-mb 1000 --slow-size-mb 200 --json [--profile] [--dest DIR]

Each row runs in a fresh subprocess as TWO processes, as between two machines: the
run's process is the client (sender), a forked process the worker (receiver);
signaling (SDP), the worker's CPU figure and its file check travel over a pipe,
the bytes over loopback. ``--slow-size-mb`` sizes the ``ours`` and ``baseline``
rows (plain aiortc moves ~5-10 MB/s); every other row uses ``--size-mb``. Ratios
compare MB/s against the ``baseline``, ``tcp`` and ``disk`` rows of the same run.

``--dest DIR``: where the receiver writes (a fresh temporary folder under DIR per row;
the payloads stay in the system temp folder). Default: ``/dev/shm`` (tmpfs) when it is
a writable folder, so the rows time the transfer rather than this machine's disk -- a
VM disk may sustain a few hundred MB/s, below every fast path. Pass ``--dest /tmp`` (or
any folder) to include the disk; ``dest`` and ``dest_fs`` in the report say which it was.

- ``baseline``: the original sleap-rtc scheme -- whole file read into memory,
  64 KiB chunks, poll ``bufferedAmount`` < 16 MiB every 0.1 s, receiver writes chunks.
- ``ours``: connect/accept + PSK authentication + ``send_file`` over the data
  channel with aiortc's standard SCTP packets (SHA-256 on both ends, .part + rename).
- ``tuned``: as ``ours`` with both peers announcing ``+sctp16k`` (large SCTP packets,
  fewer SACKs: ``sleap_rtc_plugin.peer.sctp_tuning``) -- the path through NAT.
- ``tcp``: blocking sockets over 127.0.0.1, ``sendfile`` -> ``recv_into`` + write, no TLS,
  no hashing: the ceiling here.
- ``direct``: the direct TLS stream (``FastPaths(direct=True)``).
- ``shared``: a ``transfer.shared_paths`` mapping between two names of one folder:
  the receiver copies and verifies, no bytes on the link.
- ``cache``: the same file submitted a second time (first send not timed).
- ``disk``: the receiver's storage ceiling, no peer: the payload copied into ``--dest``
  1 MiB at a time (closed, not fsynced -- no transfer path fsyncs the whole file either).

``mb_per_s``: file size over the timed ``send_file`` (the sender's SHA-256 and the
receiver's verification included; setup and authentication reported apart);
``transfer_mb_per_s``: ``SentFile.mb_per_s`` (after the sender's hash). ``cpu_s``:
both processes, whole run (setup included); ``peak_rss_growth_mb``: the larger of
the two processes' peak RSS growth over their post-import RSS. ``x_baseline``, ``x_tcp``,
``x_disk``: ``mb_per_s`` over that row's; ``x_baseline_transfer``: ``transfer_mb_per_s``
over the baseline's ``mb_per_s``. A row near ``x_disk`` 1 is bound by the receiver's storage.
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
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("baseline", "ours", "tuned", "tcp", "direct", "shared", "cache", "disk")
SLOW_MODES = ("ours", "baseline")


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _default_dest() -> str | None:
    """tmpfs where there is one: the rows should time the transfer, not this machine's disk."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _fs_type(path: str) -> str:
    """The filesystem type of ``path``: the longest mount point of /proc/mounts that holds it."""
    real, best, fs = os.path.realpath(path), "", "unknown"
    try:
        with open("/proc/mounts") as fh:
            mounts = [line.split()[1:3] for line in fh]
    except OSError:
        return fs
    for mnt, kind in mounts:
        mnt = mnt.replace("\\040", " ")
        # >=: of two mounts on one point the later is the one on top
        if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, fs = mnt, kind
    return fs


def _warm(dest: str, mb: float) -> None:
    """Write and delete ``mb`` MB under ``dest`` before any row.

    On a VM the first write into guest memory the kernel never touched before (page
    cache or tmpfs) costs several times a later one (measured here: 1 GB into fresh
    /dev/shm pages 0.5-3.5 CPU s, into reused ones ~0.5 s), so without this the first
    rows of a run would pay for the machine, not for their path.
    """
    block = memoryview(bytearray(os.urandom(1 << 20)))
    with tempfile.NamedTemporaryFile(dir=dest) as fh:
        for _ in range(int(mb)):
            fh.write(block)
        fh.flush()


# -- two processes: the parent of a run is the client (sender), a forked child the worker ----------
#
# Signaling (SDP offer/answer), the worker's CPU figure and its received-file check travel over a
# multiprocessing Pipe; the bytes travel over loopback exactly as between two machines.


def _fastpaths(mode: str, src: Path, out: Path):
    from sleap_rtc_plugin.peer import FastPaths

    if mode == "ours":
        return FastPaths(direct=False, sctp=False)
    if mode == "tuned":
        return FastPaths(direct=False, sctp=True)
    if mode in ("direct", "cache"):
        return FastPaths(direct=True, sctp=False)
    if mode == "shared":
        return FastPaths(direct=False, sctp=False, shared_paths=((str(src.parent), str(out / "worker-view-of-share")),))
    raise ValueError(mode)


async def _worker_link(conn, mode: str, src: Path, out: Path) -> dict:
    from sleap_rtc_plugin.peer import accept

    if mode == "shared":
        (out / "worker-view-of-share").symlink_to(src.parent, target_is_directory=True)
    offer = await asyncio.to_thread(conn.recv)
    answer, task = await accept(offer, role="worker", peer_id="w", allow_loopback=True, fastpaths=_fastpaths(mode, src, out))
    conn.send(answer)
    link = await task
    await link.authenticate(b"bench-secret")
    await link.accept_files(out)
    for _ in range(2 if mode == "cache" else 1):
        got = await link.receive_file(timeout=3600)
    conn.send({"received": str(got.path), "tuned": getattr(link.transport, "large_packets", False)})
    await link.closed.wait()
    return {}


async def _worker_baseline(conn, mode: str, src: Path, out: Path) -> dict:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from sleap_rtc_plugin.peer.ice import enable_loopback_candidates

    enable_loopback_candidates()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    done = asyncio.Event()
    target = out / src.name
    sink = open(target, "wb")

    @pc.on("datachannel")
    def _dc(channel):
        @channel.on("message")
        def _msg(m):
            if m == "END":
                sink.close()
                done.set()
            elif isinstance(m, bytes):
                sink.write(m)

    offer = await asyncio.to_thread(conn.recv)
    await pc.setRemoteDescription(RTCSessionDescription(**offer))
    await pc.setLocalDescription(await pc.createAnswer())
    conn.send({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
    await done.wait()
    conn.send({"received": str(target)})
    await asyncio.to_thread(conn.recv)
    await pc.close()
    return {}


def _tcp_receive(conn, target: Path) -> None:
    """The fastest plain receive Python has: blocking ``recv_into`` one 1 MiB buffer, unbuffered writes."""
    mv = memoryview(bytearray(1 << 20))
    with socket.create_server(("127.0.0.1", 0)) as server:
        conn.send(server.getsockname()[1])
        peer, _ = server.accept()
    with peer, open(target, "wb", buffering=0) as fh:
        while n := peer.recv_into(mv):
            fh.write(mv[:n])


async def _worker_tcp(conn, mode: str, src: Path, out: Path) -> dict:
    target = out / src.name
    await asyncio.to_thread(_tcp_receive, conn, target)
    conn.send({"received": str(target)})
    return {}


def _worker_process(conn, mode: str, src: str, out: str) -> None:
    import aiortc  # noqa: F401

    import sleap_rtc_plugin.peer  # noqa: F401

    runner = {"baseline": _worker_baseline, "tcp": _worker_tcp}.get(mode, _worker_link)
    rss0 = _rss_mb()
    cpu0 = time.process_time()
    try:
        asyncio.run(runner(conn, mode, Path(src), Path(out)))
    finally:
        conn.send({"cpu_s": time.process_time() - cpu0, "peak_rss_growth_mb": _peak_rss_mb() - rss0})


async def _client_link(conn, mode: str, src: Path, out: Path) -> tuple[dict, float]:
    from sleap_rtc_plugin.peer import connect

    async def send_offer(offer):
        conn.send(offer)
        return await asyncio.to_thread(conn.recv)

    t0 = time.perf_counter()
    link = await connect(send_offer, role="client", peer_id="c", allow_loopback=True, fastpaths=_fastpaths(mode, src, out))
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    await link.authenticate(b"bench-secret")
    auth_s = time.perf_counter() - t0
    if mode == "cache":
        await link.send_file(src)
    t0 = time.perf_counter()
    sent = await link.send_file(src, name=src.name + (".again" if mode == "cache" else ""))
    seconds = time.perf_counter() - t0
    report = await asyncio.to_thread(conn.recv)
    extra = {
        "setup_s": setup, "auth_s": auth_s, "via": sent.via, "bytes_sent": sent.bytes_sent,
        "transfer_mb_per_s": round(sent.mb_per_s, 2), "received": report["received"],
    }
    if getattr(link.transport, "large_packets", False) or report.get("tuned"):
        extra["large_sctp_packets"] = [bool(getattr(link.transport, "large_packets", False)), bool(report.get("tuned"))]
    if sent.fallback:
        extra["fallback"] = sent.fallback
    await link.close()
    return extra, seconds


async def _client_baseline(conn, mode: str, src: Path, out: Path) -> tuple[dict, float]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from sleap_rtc_plugin.peer.ice import enable_loopback_candidates

    enable_loopback_candidates()
    t0 = time.perf_counter()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    ch = pc.createDataChannel("bench")
    opened = asyncio.Event()
    ch.on("open", opened.set)
    await pc.setLocalDescription(await pc.createOffer())
    conn.send({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
    await pc.setRemoteDescription(RTCSessionDescription(**await asyncio.to_thread(conn.recv)))
    await opened.wait()
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = src.read_bytes()  # the original reads the whole file into memory
    for i in range(0, len(data), 64 * 1024):
        while ch.bufferedAmount > 16 * 1024 * 1024:
            await asyncio.sleep(0.1)
        ch.send(data[i : i + 64 * 1024])
    ch.send("END")
    report = await asyncio.to_thread(conn.recv)
    seconds = time.perf_counter() - t0
    conn.send("close")
    await pc.close()
    return {"setup_s": setup, "received": report["received"]}, seconds


def _tcp_send(port: int, src: Path) -> None:
    """The fastest plain send: the kernel's ``sendfile`` from the page cache, then EOF."""
    with socket.create_connection(("127.0.0.1", port)) as sock, open(src, "rb") as fh:
        sock.sendfile(fh)
        sock.shutdown(socket.SHUT_WR)


async def _client_tcp(conn, mode: str, src: Path, out: Path) -> tuple[dict, float]:
    port = await asyncio.to_thread(conn.recv)
    t0 = time.perf_counter()
    await asyncio.to_thread(_tcp_send, port, src)
    report = await asyncio.to_thread(conn.recv)
    return {"received": report["received"]}, time.perf_counter() - t0


def _disk(src: Path, dest: str | None) -> dict:
    """The receiver's storage ceiling: the payload copied into ``dest`` 1 MiB at a time, no peer.

    Timed to the close, without fsync: no transfer path fsyncs the whole file either.
    """
    mv = memoryview(bytearray(1 << 20))
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        target = Path(tmp) / src.name
        rss0 = _rss_mb()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        with open(src, "rb", buffering=0) as fin, open(target, "wb", buffering=0) as fout:
            while n := fin.readinto(mv):
                fout.write(mv[:n])
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        size = src.stat().st_size
        assert target.stat().st_size == size, "incomplete copy"
    return {
        "mode": "disk",
        "size_mb": size / 1e6,
        "wall_s": round(wall, 3),
        "mb_per_s": round(size / 1e6 / wall, 2),
        "cpu_s": round(cpu, 3),
        "cpu_s_sender": round(cpu, 3),
        "cpu_s_receiver": 0,
        "peak_rss_growth_mb": round(max(0.0, _peak_rss_mb() - rss0), 1),  # ru_maxrss lags VmRSS a little
    }


def child(mode: str, src: Path, profile: bool, dest: str | None) -> dict:
    """One run: this process is the client (sender); a forked process the worker (receiver), writing under ``dest``."""
    if mode == "disk":
        return _disk(src, dest)
    import multiprocessing

    import aiortc  # noqa: F401  (import cost outside the measurement)

    import sleap_rtc_plugin.peer  # noqa: F401

    runner = {"baseline": _client_baseline, "tcp": _client_tcp}.get(mode, _client_link)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        ours, theirs = multiprocessing.get_context("fork").Pipe()
        worker = multiprocessing.get_context("fork").Process(target=_worker_process, args=(theirs, mode, str(src), tmp), daemon=True)
        worker.start()
        rss0 = _rss_mb()
        prof = cProfile.Profile() if profile else None
        cpu0 = time.process_time()
        if prof:
            prof.enable()
        extra, wall = asyncio.run(runner(ours, mode, src, Path(tmp)))
        if prof:
            prof.disable()
        cpu = time.process_time() - cpu0
        worker_stats = ours.recv()
        worker.join(30)
        size = src.stat().st_size
        received = Path(extra.pop("received"))
        assert received.stat().st_size == size, "incomplete transfer"
    result = {
        "mode": mode,
        "size_mb": size / 1e6,
        "wall_s": round(wall, 3),
        "mb_per_s": round(size / 1e6 / wall, 2),
        "cpu_s": round(cpu + worker_stats["cpu_s"], 3),
        "cpu_s_sender": round(cpu, 3),
        "cpu_s_receiver": round(worker_stats["cpu_s"], 3),
        "peak_rss_growth_mb": round(max(_peak_rss_mb() - rss0, worker_stats["peak_rss_growth_mb"]), 1),
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
    parser.add_argument("--size-mb", type=float, default=50, help="payload for tcp/direct/shared/cache/disk")
    parser.add_argument("--slow-size-mb", type=float, default=None, help="payload for the data-channel rows (ours, baseline); default --size-mb")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--profile", action="store_true", help="add cProfile top functions per scheme")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--dest", default=_default_dest(), help="receiver's folder; default /dev/shm if writable, else system temp")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.file), args.profile, args.dest)))
        return 0
    dest = args.dest or tempfile.gettempdir()
    if not os.path.isdir(dest):
        parser.error(f"--dest {dest}: not a folder")
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
        _warm(dest, 2 * args.size_mb)
        for mode in args.modes.split(","):
            src = payloads["slow" if mode in SLOW_MODES else "fast"]
            cmd = [sys.executable, __file__, "--child", mode, "--file", str(src), "--dest", dest]
            cmd += ["--profile"] if args.profile else []
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                results[mode] = {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
            else:
                results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = results.get("baseline", {}).get("mb_per_s")
    ceiling = results.get("tcp", {}).get("mb_per_s")
    disk = results.get("disk", {}).get("mb_per_s")
    for r in results.values():
        if "mb_per_s" in r:
            if base:
                r["x_baseline"] = round(r["mb_per_s"] / base, 1)
                if r.get("transfer_mb_per_s"):  # 0 where no bytes moved (cache)
                    r["x_baseline_transfer"] = round(r["transfer_mb_per_s"] / base, 1)
            if ceiling:
                r["x_tcp"] = round(r["mb_per_s"] / ceiling, 3)
            if disk:
                r["x_disk"] = round(r["mb_per_s"] / disk, 3)
    import aiortc

    report = {
        "size_mb": args.size_mb,
        "slow_size_mb": slow_mb,
        "python": sys.version.split()[0],
        "aiortc": aiortc.__version__,
        "cpus": os.cpu_count(),
        "dest": dest,
        "dest_fs": _fs_type(dest),
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for mode, r in results.items():
            print(
                f"{mode:9s} {r.get('size_mb', '-'):>7} MB {r.get('mb_per_s', '-'):>8} MB/s  x{r.get('x_baseline', '-')} baseline  "
                f"x{r.get('x_tcp', '-')} tcp  x{r.get('x_disk', '-')} disk  via {r.get('via', '-')}  "
                f"cpu {r.get('cpu_s', '-')} s  peak+{r.get('peak_rss_growth_mb', '-')} MB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
