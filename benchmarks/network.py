"""Throughput across the network lab on shaped links, as a fraction of line rate (needs root).

    sudo .venv/bin/python benchmarks/network.py --rates 100mbit,1gbit --size-mb 60 --json

Builds the lab of ``tests/netlab`` (two sites behind NAT routers, an "internet" with a
real coturn), limits every link with ``tc tbf`` to each rate in turn, and sends one file
per row from a host in site A to a host across the path the row names; sender and
receiver are separate processes in their own namespaces, as on two machines:

- ``baseline``: the original sleap-rtc scheme (whole file in memory, 64 KiB chunks,
  poll ``bufferedAmount`` every 0.1 s) through both NATs (srflx pair);
- ``ours``: ``send_file`` on the data channel, aiortc's standard SCTP packets, through NAT;
- ``tuned``: as ``ours`` with large SCTP packets (``+sctp16k``), through NAT;
- ``tuned_turn``: ``tuned`` through the TURN relay (site A's NAT changes ports per
  destination, topology c), UDP to coturn;
- ``direct``: the direct TLS stream between two hosts of one LAN (host pair).

Per row: ``mb_per_s`` (file size over the timed send, hashing and the receiver's
verification included; ``transfer_mb_per_s``: after the sender's SHA-256 pass, as
``SentFile.mb_per_s``), ``fraction_of_line`` (payload bits over the tbf rate; headers
make 1.0 unreachable: ~0.95 for TCP, less for SCTP/DTLS/UDP), ``cpu_s_per_gb`` (sender
+ receiver, plus coturn's for relayed rows; process start-up included),
``moving_cpu_s_per_gb_sender``/``_receiver`` (``[user, system]`` CPU s per GB while the
file moves, start-up excluded), the selected ICE pair, and the issue's target where it
sets one (``meets_target``). Files are written to /dev/shm. The sender's clock starts
once the receiver reports that it accepts files.

Diagnostics (environment): ``NETBENCH_LOG=INFO`` with ``NETBENCH_LOG_DIR=DIR`` keeps each
peer's log (``DIR/RATE-ROW-sender.log``); ``NETBENCH_PROFILE=DIR`` runs each peer under
cProfile (``DIR/ROW-send.prof``, read with ``python -m pstats``); ``NETBENCH_PREHASH=1``
hashes the file before the clock starts (a file sent before: the digest is memoised).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NETLAB = HERE.parent / "tests" / "netlab"

#: row -> (topology, sender host, receiver host)
ROWS = {
    "baseline": ("b", "a1", "b1"),
    "ours": ("b", "a1", "b1"),
    "tuned": ("b", "a1", "b1"),
    "tuned_turn": ("c", "a1", "b1"),
    "direct": ("a", "a1", "a2"),
}
#: the issue's targets: (row, rate) -> fraction of line rate
TARGETS = {("direct", "1gbit"): 0.95, ("tuned", "100mbit"): 0.9, ("tuned", "1gbit"): 0.7, ("tuned_turn", "100mbit"): 0.8}
SECRET = b"bench-secret-0123456789"


# -- one peer, run inside a namespace: ``network.py _peer send|receive ROW FILE OUT ICE`` -------------

def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _cpu() -> list[float]:
    """User and system CPU seconds of this process so far."""
    t = os.times()
    return [t.user, t.system]


def _since(start: list[float]) -> list[float]:
    return [round(now - then, 3) for now, then in zip(_cpu(), start)]


async def _line() -> dict:
    return json.loads(await asyncio.to_thread(sys.stdin.readline))


def _fastpaths(row: str):
    from sleap_rtc_plugin.peer import FastPaths

    return FastPaths(direct=row == "direct", sctp=row in ("tuned", "tuned_turn"))


async def _peer_link(role: str, row: str, src: Path, out: Path, ice: list) -> None:
    from sleap_rtc_plugin.peer import accept, connect

    if role == "receive":
        answer, task = await accept(await _line(), ice_servers=ice, role="worker", peer_id="b", allow_loopback=False, fastpaths=_fastpaths(row))
        _emit(answer)
        link = await task
        await link.authenticate(SECRET)
        await link.accept_files(out)
        _emit({"ready": True})  # the sender starts its clock only now: an offer before this is refused
        cpu0 = _cpu()
        got = await link.receive_file(timeout=3600)
        _emit({"received": str(got.path), "cpu_s": time.process_time(), "moving_cpu": _since(cpu0), "path": link.path.as_dict() if link.path else None})
        await _line()
        await link.close()
        return

    async def send_offer(offer: dict) -> dict:
        _emit(offer)
        return await _line()

    link = await connect(send_offer, ice_servers=ice, role="client", peer_id="a", allow_loopback=False, fastpaths=_fastpaths(row), timeout=60)
    await link.authenticate(SECRET)
    await _line()  # the receiver accepts files
    if os.environ.get("NETBENCH_PREHASH"):
        from sleap_rtc_plugin.util.hashing import stat_and_hash

        await asyncio.to_thread(stat_and_hash, src)
    t0, cpu0 = time.perf_counter(), _cpu()
    sent = await link.send_file(src)
    seconds = time.perf_counter() - t0
    _emit({"seconds": seconds, "via": sent.via, "cpu_s": time.process_time(), "moving_cpu": _since(cpu0), "path": link.path.as_dict() if link.path else None,
           "transfer_mb_per_s": sent.mb_per_s,
           "large_sctp_packets": bool(getattr(link.transport, "large_packets", False))})
    await _line()
    await link.close()


async def _peer_baseline(role: str, src: Path, out: Path, ice: list) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from sleap_rtc_plugin.peer.ice import rtc_configuration
    from sleap_rtc_plugin.peer.ice_choice import choose_ice_servers

    pc = RTCPeerConnection(rtc_configuration(await choose_ice_servers(ice)))
    if role == "receive":
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

        await pc.setRemoteDescription(RTCSessionDescription(**await _line()))
        await pc.setLocalDescription(await pc.createAnswer())
        _emit({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
        cpu0 = _cpu()  # includes the ICE/DTLS setup: the baseline has no separate start signal
        await done.wait()
        _emit({"received": str(target), "cpu_s": time.process_time(), "moving_cpu": _since(cpu0), "path": None})
        await _line()
        await pc.close()
        return
    ch = pc.createDataChannel("bench")
    opened = asyncio.Event()
    ch.on("open", opened.set)
    await pc.setLocalDescription(await pc.createOffer())
    _emit({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
    await pc.setRemoteDescription(RTCSessionDescription(**await _line()))
    await opened.wait()
    t0, cpu0 = time.perf_counter(), _cpu()
    data = src.read_bytes()
    for i in range(0, len(data), 64 * 1024):
        while ch.bufferedAmount > 16 * 1024 * 1024:
            await asyncio.sleep(0.1)
        ch.send(data[i : i + 64 * 1024])
    ch.send("END")
    await _line()  # the receiver's report: the file is complete
    from sleap_rtc_plugin.peer.path_report import selected_path

    path = selected_path(pc)
    _emit({"seconds": time.perf_counter() - t0, "via": "baseline", "cpu_s": time.process_time(), "moving_cpu": _since(cpu0), "path": path.as_dict() if path else None})
    await _line()
    await pc.close()


def peer_main(argv: list[str]) -> None:
    import logging

    logging.basicConfig(level=os.environ.get("NETBENCH_LOG", "WARNING"), stream=sys.stderr, format="%(levelname)s %(relativeCreated)d %(name)s: %(message)s")
    role, row, src, out, ice = argv
    run = _peer_baseline(role, Path(src), Path(out), json.loads(ice)) if row == "baseline" else _peer_link(role, row, Path(src), Path(out), json.loads(ice))
    profile_dir = os.environ.get("NETBENCH_PROFILE")
    if not profile_dir:
        asyncio.run(run)
        return
    import cProfile  # where each side's CPU goes: ``python -m pstats DIR/ROW-ROLE.prof``

    with cProfile.Profile() as prof:
        asyncio.run(run)
    prof.dump_stats(os.path.join(profile_dir, f"{row}-{role}.prof"))


# -- the run ----------------------------------------------------------------------------------------

def _proc_cpu(pid: int) -> float:
    """utime + stime of a process, seconds (coturn's share of relayed rows)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _coturn_pid(lab) -> int | None:
    pidfile = lab.workdir / "turn.pid"
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def run_row(lab, row: str, rate: str, src: Path, ice: list) -> dict:
    topology, sender_host, receiver_host = ROWS[row]
    lab.topology(topology)
    env = lab.env()
    with tempfile.TemporaryDirectory(dir="/dev/shm") as out:
        def start(host: str, role: str) -> subprocess.Popen:
            return lab.popen(host, [sys.executable, str(Path(__file__).resolve()), "_peer", role, row, str(src), out, json.dumps(ice)],
                             env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        receiver, sender = start(receiver_host, "receive"), start(sender_host, "send")
        coturn = _coturn_pid(lab)
        turn_cpu0 = _proc_cpu(coturn) if coturn else 0.0

        def relay(src_proc: subprocess.Popen, dst_proc: subprocess.Popen) -> dict:
            line = src_proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{row}: a peer stopped: {src_proc.stderr.read()[-2000:]}")
            dst_proc.stdin.write(line)
            dst_proc.stdin.flush()
            return json.loads(line)

        try:
            relay(sender, receiver)            # offer
            relay(receiver, sender)            # answer
            def report(proc: subprocess.Popen) -> dict:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"{row}: a peer stopped: {proc.stderr.read()[-2000:]}")
                return json.loads(line)

            if row == "baseline":
                got = relay(receiver, sender)  # receiver's report ends the sender's clock
                result = report(sender)
            else:
                relay(receiver, sender)        # receiver ready
                result = report(sender)
                got = report(receiver)
            for proc in (sender, receiver):
                proc.stdin.write("{}\n")
                proc.stdin.flush()
            for proc in (sender, receiver):
                proc.wait(60)
            logs = {"sender": sender.stderr.read(), "receiver": receiver.stderr.read()}
            warnings = [line.strip() for text in logs.values() for line in text.splitlines() if line.startswith("WARNING")]
            if os.environ.get("NETBENCH_LOG_DIR"):  # the peers' logs (NETBENCH_LOG=INFO for timings), one file per row
                for who, text in logs.items():
                    Path(os.environ["NETBENCH_LOG_DIR"], f"{rate}-{row}-{who}.log").write_text(text)
        finally:
            for proc in (sender, receiver):
                if proc.poll() is None:
                    proc.kill()
        turn_cpu = (_proc_cpu(coturn) - turn_cpu0) if coturn else 0.0
        size = src.stat().st_size
        assert Path(got["received"]).stat().st_size == size, f"{row}: incomplete transfer"
    mb_per_s = size / 1e6 / result["seconds"]
    line_mb_per_s = _bits(rate) / 8 / 1e6
    relayed = row == "tuned_turn"
    cpu = result["cpu_s"] + got["cpu_s"] + (turn_cpu if relayed else 0.0)
    path = result.get("path") or got.get("path") or {}
    report = {
        "row": row, "rate": rate, "topology": topology, "size_mb": round(size / 1e6, 1), "wall_s": round(result["seconds"], 3),
        "mb_per_s": round(mb_per_s, 2), "line_mb_per_s": round(line_mb_per_s, 2), "fraction_of_line": round(mb_per_s / line_mb_per_s, 3),
        "cpu_s_per_gb": round(cpu / (size / 1e9), 2), "cpu_s_sender": round(result["cpu_s"], 2), "cpu_s_receiver": round(got["cpu_s"], 2),
        "via": result.get("via"), "path": path.get("kind"), "relay_transport": path.get("relay_transport"),
    }
    if result.get("transfer_mb_per_s"):
        report["transfer_mb_per_s"] = round(result["transfer_mb_per_s"], 2)  # after the sender's SHA-256 pass
        report["transfer_fraction_of_line"] = round(result["transfer_mb_per_s"] / line_mb_per_s, 3)
    if relayed:
        report["cpu_s_coturn"] = round(turn_cpu, 2)
    for side, data in (("sender", result), ("receiver", got)):
        if "moving_cpu" in data:  # CPU while the file moved (no start-up), per GB: [user, system]
            report[f"moving_cpu_s_per_gb_{side}"] = [round(v / (size / 1e9), 2) for v in data["moving_cpu"]]
    if warnings:
        report["warnings"] = warnings[:5]
    if "large_sctp_packets" in result:
        report["large_sctp_packets"] = result["large_sctp_packets"]
    target = TARGETS.get((row, rate))
    if target is not None:
        report["target"] = target
        report["meets_target"] = report["fraction_of_line"] >= target
    return report


def _bits(rate: str) -> int:
    sys.path.insert(0, str(NETLAB))
    from fixtures_netlab import _bits as bits

    return bits(rate)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_peer":
        peer_main(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100mbit,1gbit", help="comma-separated tbf rates (default 100mbit,1gbit)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows (default all: {','.join(ROWS)})")
    parser.add_argument("--size-mb", type=float, default=60.0, help="file size per row in MB (default 60)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    args = parser.parse_args()

    sys.path[:0] = [str(NETLAB), str(NETLAB.parent)]
    from fixtures_netlab import COORDINATOR_IP, TURN_IP, TURN_SECRET, Lab, unavailable_reason, write_self_signed  # type: ignore[import-not-found]

    from sleap_rtc_plugin.coordinator.turn import TurnConfig

    reason = unavailable_reason()
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 2
    turn = TurnConfig(secret=TURN_SECRET, ttl=3600, stun_urls=[f"stun:{TURN_IP}:3478"],
                      urls=[f"turn:{TURN_IP}:3478?transport=udp", f"turn:{TURN_IP}:3478?transport=tcp", f"turns:{TURN_IP}:443?transport=tcp"])
    ice, _ = turn.ice_servers("bench")
    results: list[dict] = []
    with tempfile.TemporaryDirectory(dir="/dev/shm") as work:
        src = Path(work) / "payload.bin"
        with open(src, "wb") as fh:
            block = os.urandom(1 << 20)
            for _ in range(int(args.size_mb * 1e6) // len(block)):
                fh.write(block)
        lab = Lab()
        lab.workdir = Path(tempfile.mkdtemp(prefix="netlab-bench-"))
        lab.cert, _ = write_self_signed(lab.workdir, TURN_IP, COORDINATOR_IP)
        try:
            lab.build()
            lab.start_coturn()
            for rate in args.rates.split(","):
                lab.shape(rate)
                for row in args.rows.split(","):
                    started = time.monotonic()
                    try:
                        results.append(run_row(lab, row, rate, src, ice))
                    except Exception as exc:  # a failed row is a result too
                        text = f"{type(exc).__name__}: {exc}"
                        results.append({"row": row, "rate": rate, "error": text if len(text) <= 1200 else text[:300] + " ... " + text[-900:]})
                    print(f"{rate:>8} {row:<11} {json.dumps(results[-1])} ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
        finally:
            lab.close()
    doc = {"benchmark": "network", "size_mb": args.size_mb, "cpus": os.cpu_count(), "results": results}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['rate']:>8} {r['row']:<11} ERROR {r['error']}")
            else:
                print(f"{r['rate']:>8} {r['row']:<11} {r['mb_per_s']:7.2f} MB/s  {r['fraction_of_line']:.3f} of line  "
                      f"{r['cpu_s_per_gb']:6.1f} CPU s/GB  path {r['path']}{' via ' + r['relay_transport'] if r.get('relay_transport') else ''}"
                      f"  via {r['via']}" + (f"  target {r['target']} {'met' if r['meets_target'] else 'MISSED'}" if "target" in r else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
