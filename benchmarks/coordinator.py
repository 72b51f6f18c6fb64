"""Coordinator load benchmark: N workers + M clients against a coordinator subprocess.

The coordinator runs in its own process and the simulated peers in ``--procs`` generator
processes of their own (multiprocessing), so the figures are the server's and not the
load generator's: on a small machine a generator sharing the server's interpreter
measured its own queueing. Every phase reports the server's CPU time next to its wall
time, and the load average of the machine is recorded with the figures (other work on
the same cores shows up there, not silently in the latencies).

Phases, separated by barriers across all processes: registration (workers, then
clients), idle (heartbeats only, ``--idle-seconds``), idle discovery (one client, one
request at a time), discovery under load
(every client in a closed loop), relay round trips under load (client → worker → client).

    python benchmarks/coordinator.py --workers 500 --clients 50 --procs 2 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

SERVER_CODE = """
import logging, sys, argparse
logging.basicConfig(level=logging.WARNING)
import sleap_rtc_plugin
from sleap_rtc_plugin.coordinator import runtime
from sleap_rtc_plugin.coordinator.cli import run_server
loop = runtime.resolve(sys.argv[2])
print("code", sleap_rtc_plugin.__path__[0], loop, flush=True)
args = argparse.Namespace(host="127.0.0.1", port=0, db=":memory:", heartbeat_interval=10.0, heartbeat_timeout=60.0,
                          compression=sys.argv[1] == "deflate", event_loop=loop)
if sys.argv[3] == "tuned":
    runtime.tune_gc()  # as `sleap-rtc server` does
if len(sys.argv) > 4:
    import cProfile, time
    with cProfile.Profile(time.thread_time) as prof:
        code = runtime.run(run_server(args, loop_name=loop), loop)
    prof.dump_stats(sys.argv[4])
    sys.exit(code)
sys.exit(runtime.run(run_server(args, loop_name=loop), loop))
"""
#: Seconds any process waits at a phase barrier before the run is abandoned.
BARRIER_TIMEOUT = 600.0
SITES = 4


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def fake_gpus(rng: random.Random) -> list[dict]:
    if rng.random() < 0.1:
        return []
    total = rng.choice([8192, 12288, 24576, 49152, 81920])
    return [{"name": "sim", "memory_total_mb": total, "memory_free_mb": rng.randint(0, total)} for _ in range(rng.choice([1, 1, 2, 4]))]


def my_share(n: int, index: int, procs: int) -> list[int]:
    return list(range(index, n, procs))


# --- generator processes --------------------------------------------------------------


class RawPeer:
    """A client speaking the coordinator's JSON frames by hand for the load phases.

    The full :class:`CoordinatorClient` decodes and validates every returned peer into
    dataclasses: on two cores that client-side work, not the server, set the latency
    under load. The idle phase still uses the full client (what a user sees)."""

    def __init__(self, ws: Any):
        self.ws = ws

    @classmethod
    async def open(cls, url: str, room_id: str, token: str, peer_id: str, role: str = "client", metadata: dict[str, Any] | None = None) -> RawPeer:
        import websockets

        peer = cls(await websockets.connect(url, max_size=None, ping_interval=None))
        frame: dict[str, Any] = {"type": "register", "room_id": room_id, "token": token, "role": role, "peer_id": peer_id, "ref": "reg"}
        if metadata:
            frame["metadata"] = metadata
        await peer.request(frame, "registered")
        return peer

    async def _next(self) -> str:
        """Next frame that is not a coordinator ping (answered as the real client does)."""
        while True:
            text = await self.ws.recv()
            if not await self.pong(text):
                return text

    async def pong(self, text: str) -> bool:
        """Answer a coordinator ping as the real client does; False if ``text`` is not one."""
        if not text.startswith('{"type":"ping"'):
            return False
        await self.ws.send(json.dumps({"type": "pong", "ts": json.loads(text)["ts"]}))
        return True

    async def request(self, frame: dict[str, Any], want: str) -> str:
        await self.ws.send(json.dumps(frame))
        text = await self._next()
        if not text.startswith(f'{{"type":"{want}"'):
            raise RuntimeError(f"expected {want}, got {text[:200]}")
        return text

    async def relay_roundtrip(self, target: str, payload: dict[str, Any], ref: str) -> None:
        await self.ws.send(json.dumps({"type": "relay", "target": target, "kind": "offer", "payload": payload, "ref": ref}))
        seen_ok = seen_answer = False
        while not (seen_ok and seen_answer):
            text = await self._next()
            if text.startswith('{"type":"ok"'):
                seen_ok = True
            elif text.startswith('{"type":"relay"'):
                seen_answer = True
            else:
                raise RuntimeError(f"relay to {target}: {text[:200]}")



class RawWorker(RawPeer):
    """A simulated worker on hand-written frames: answers pings and relayed offers.

    A full :class:`CoordinatorClient` per simulated worker cost its generator several ms
    of CPU per registration, so the registration rate measured the generators; this one
    costs a websocket handshake and two frames."""

    async def serve(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for text in self.ws:
                if await self.pong(text):
                    continue
                if text.startswith('{"type":"relay"'):
                    relay = json.loads(text)
                    if relay.get("kind") == "offer":
                        await self.ws.send(json.dumps({"type": "relay", "target": relay["source"], "kind": "answer", "payload": {"sdp": "a"}}))
        except ConnectionClosed:
            pass


def generator_main(index: int, spec: dict[str, Any], barrier: Any, results: Any) -> None:
    """Entry point of one load-generator process (its own interpreter and event loop)."""
    raise_fd_limit()
    if spec.get("load_cpus"):
        os.sched_setaffinity(0, set(spec["load_cpus"]))
    try:
        from sleap_rtc_plugin.coordinator import runtime

        loop = runtime.resolve(spec["generator_loop"])
        results.put(runtime.run(_generate(index, spec, barrier), loop))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which aborts the run
        barrier.abort()
        results.put({"index": index, "error": f"{type(exc).__name__}: {exc}"})


async def _generate(index: int, spec: dict[str, Any], barrier: Any) -> dict[str, Any]:
    from sleap_rtc_plugin.coordinator import CoordinatorClient

    procs, url, room_id, token = spec["procs"], spec["url"], spec["room_id"], spec["token"]
    rng = random.Random(spec["seed"] * 1000 + index)
    sem = asyncio.Semaphore(max(1, math.ceil(spec["concurrency"] / procs)))

    async def phase() -> None:
        await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)

    async def join_full_client(i: int) -> CoordinatorClient:
        client = CoordinatorClient(url, room_id=room_id, token=token, role="client", peer_id=f"c{i}", reconnect=False, request_timeout=120)
        async with sem:
            await client.start()
        return client

    async def join_worker(i: int) -> RawWorker:
        meta = {"gpus": fake_gpus(rng), "labels": {"site": f"s{i % SITES}"}}
        async with sem:
            worker = await RawWorker.open(url, room_id, token, f"w{i}", role="worker", metadata=meta)
        serving.append(asyncio.create_task(worker.serve()))
        return worker

    serving: list[asyncio.Task[None]] = []
    await phase()  # B0: everyone imported and ready
    workers = await asyncio.gather(*(join_worker(i) for i in my_share(spec["workers"], index, procs)))
    full_client = await join_full_client(10**6 + index) if index == 0 else None

    async def open_raw(i: int) -> RawPeer:
        async with sem:
            return await RawPeer.open(url, room_id, token, f"c{i}")

    clients = await asyncio.gather(*(open_raw(i) for i in my_share(spec["clients"], index, procs)))

    await phase()  # B1: all registered
    await asyncio.sleep(spec["idle_seconds"])
    await phase()  # B1b: nothing but heartbeats for idle_seconds

    idle_ms: list[float] = []
    if full_client is not None:
        for _ in range(spec["idle_rounds"]):
            start = time.perf_counter()
            await full_client.discover(min_gpu_memory_mb=4096, labels={"site": "s1"})
            idle_ms.append((time.perf_counter() - start) * 1000)
    await phase()  # B2: idle discovery done

    discover_ms: list[float] = []
    returned: list[int] = []

    def discover_frame(n: int) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "discover", "role": "worker", "ref": f"d{n}"}
        if (gpu := rng.choice([None, 4096, 16384])) is not None:
            frame["min_gpu_memory_mb"] = gpu
        if rng.random() < 0.5:
            frame["labels"] = {"site": f"s{rng.randrange(SITES)}"}
        return frame

    async def discover_loop(client: RawPeer) -> None:
        for n in range(spec["rounds"]):
            start = time.perf_counter()
            reply = await client.request(discover_frame(n), "peer_list")
            discover_ms.append((time.perf_counter() - start) * 1000)
            returned.append(reply.count('"peer_id"'))

    await asyncio.gather(*(discover_loop(c) for c in clients))
    await phase()  # B3: discovery under load (closed loop) done

    open_ms: list[float] = []
    rate = spec["discover_rate"] / max(1, spec["clients"])

    async def open_loop(client: RawPeer, deadline: float) -> None:
        """Poisson arrivals at ``rate`` per client; latency from the *scheduled* time, so
        a reply that came late delays the next request without hiding its wait."""
        due, n = time.perf_counter(), 0
        while True:
            due += rng.expovariate(rate)
            if due >= deadline:
                return
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            await client.request(discover_frame(n), "peer_list")
            open_ms.append((time.perf_counter() - due) * 1000)
            n += 1

    if spec["discover_rate"] > 0:
        end = time.perf_counter() + spec["open_seconds"]
        await asyncio.gather(*(open_loop(c, end) for c in clients))
    await phase()  # B3b: discovery at an offered rate (open loop) done

    relay_ms: list[float] = []

    async def relay_loop(client: RawPeer) -> None:
        for n in range(spec["rounds"]):
            target = f"w{rng.randrange(spec['workers'])}"
            start = time.perf_counter()
            await client.relay_roundtrip(target, {"sdp": "o" * 2000}, f"r{n}")
            relay_ms.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(relay_loop(c) for c in clients))
    await phase()  # B4: relays done; workers stayed up until every client finished

    if full_client:
        await full_client.close()
    for raw in [*clients, *workers]:
        await raw.ws.close()
    await asyncio.gather(*serving)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "index": index,
        "idle_ms": idle_ms,
        "discover_ms": discover_ms,
        "returned": returned,
        "relay_ms": relay_ms,
        "open_ms": open_ms,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


# --- the parent: server, barriers, figures --------------------------------------------


def _start_server(profile: str | None, compression: bool, loop: str, gc_mode: str) -> tuple[subprocess.Popen[str], str, str, str]:
    """Start the coordinator; return it, its URL, the package directory it runs from
    (recorded with the figures: a before/after comparison must say which code ran) and
    its event loop."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-c", SERVER_CODE, "deflate" if compression else "none", loop, gc_mode, *([profile] if profile else [])]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env)
    first = proc.stdout.readline().split() if proc.stdout else []
    code, loop_name = (first[1], first[2]) if len(first) == 3 else ("", "")
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"error: coordinator did not start: {line!r}")
    return proc, line.strip().rsplit(" ", 1)[-1], code, loop_name


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sleap_rtc_plugin.coordinator import create_room

    fd_limit = raise_fd_limit()
    needed = args.workers + args.clients + 200
    if fd_limit < needed:
        raise SystemExit(f"error: the server needs ~{needed} file descriptors, RLIMIT_NOFILE allows {fd_limit}; lower --workers/--clients")
    load_before = os.getloadavg()
    server, url, server_code, loop_name = _start_server(args.profile, args.compression, args.event_loop, "default" if args.default_gc else "tuned")
    load_cpus: list[int] = []
    if args.server_cpu is not None:
        os.sched_setaffinity(server.pid, {args.server_cpu})
        load_cpus = sorted(os.sched_getaffinity(0) - {args.server_cpu})
        if not load_cpus:
            raise SystemExit("error: --server-cpu needs a machine with at least two CPUs (the load generators use the others)")
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    try:
        room_id, token, _ = asyncio.run(create_room(url))
        time.sleep(0.2)
        rss_before = rss_kib(server.pid)
        barrier = ctx.Barrier(args.procs + 1)
        results = ctx.Queue()
        spec = {
            "procs": args.procs, "url": url, "room_id": room_id, "token": token, "seed": args.seed,
            "workers": args.workers, "clients": args.clients, "rounds": args.rounds,
            "idle_rounds": args.idle_rounds, "concurrency": args.concurrency, "idle_seconds": args.idle_seconds,
            "load_cpus": load_cpus, "generator_loop": args.generator_loop, "discover_rate": args.discover_rate, "open_seconds": args.open_seconds,
        }
        procs = [ctx.Process(target=generator_main, args=(i, spec, barrier, results), daemon=True) for i in range(args.procs)]
        for p in procs:
            p.start()

        marks: list[tuple[float, float]] = []
        for _ in range(7):  # B0, B1, B1b, B2, B3, B3b, B4
            try:
                barrier.wait(BARRIER_TIMEOUT)
            except threading.BrokenBarrierError:
                failed = results.get(timeout=10) if not results.empty() else {"error": "a generator stopped"}
                raise SystemExit(f"error: a generator failed: {failed.get('error')}") from None
            marks.append((time.perf_counter(), cpu_s(server.pid)))
            if len(marks) == 2:
                time.sleep(0.5)
                rss_after = rss_kib(server.pid)
        parts = [results.get(timeout=120) for _ in procs]
        load_after = os.getloadavg()
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()
        raise
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
    errors = [p["error"] for p in parts if "error" in p]
    if errors:
        raise SystemExit(f"error: a generator failed: {errors[0]}")

    def span(a: int, b: int) -> tuple[float, float]:
        return marks[b][0] - marks[a][0], marks[b][1] - marks[a][1]

    idle = [x for p in parts for x in p["idle_ms"]]
    discover = [x for p in parts for x in p["discover_ms"]]
    relay = [x for p in parts for x in p["relay_ms"]]
    open_loop = [x for p in parts for x in p["open_ms"]]
    returned = [x for p in parts for x in p["returned"]]
    connections = args.workers + args.clients
    reg_wall, reg_cpu = span(0, 1)
    idle_wall, idle_cpu = span(1, 2)
    disc_wall, disc_cpu = span(3, 4)
    open_wall, open_cpu = span(4, 5)
    relay_wall, relay_cpu = span(5, 6)
    return {
        "benchmark": "coordinator",
        "workers": args.workers,
        "clients": args.clients,
        "generator_processes": args.procs,
        "rounds_per_client": args.rounds,
        "registrations_per_s": round(connections / reg_wall, 1),
        "registration_seconds": round(reg_wall, 3),
        "server_cpu_ms_per_registration": round(1000 * reg_cpu / connections, 3),
        "idle_seconds": round(idle_wall, 2),
        "server_cpu_share_idle": round(idle_cpu / idle_wall, 4) if idle_wall > 0 else None,
        "discover_idle_p50_ms": round(percentile(idle, 50), 2),
        "discover_idle_p99_ms": round(percentile(idle, 99), 2),
        "discover_under_load_p50_ms": round(percentile(discover, 50), 2),
        "discover_under_load_p99_ms": round(percentile(discover, 99), 2),
        "discover_per_s_under_load": round(len(discover) / disc_wall, 1),
        "server_cpu_ms_per_discover": round(1000 * disc_cpu / max(1, len(discover)), 3),
        "server_cpu_share_discover_phase": round(disc_cpu / disc_wall, 2),
        "discover_mean_peers_returned": round(sum(returned) / max(1, len(returned)), 1),
        "discover_offered_per_s": args.discover_rate,
        "discover_open_loop_per_s": round(len(open_loop) / open_wall, 1) if open_loop else None,
        "discover_open_loop_p50_ms": round(percentile(open_loop, 50), 2),
        "discover_open_loop_p99_ms": round(percentile(open_loop, 99), 2),
        "discover_open_loop_max_ms": round(max(open_loop), 2) if open_loop else None,
        "server_cpu_share_open_loop": round(open_cpu / open_wall, 3) if open_loop else None,
        "relay_roundtrip_p50_ms": round(percentile(relay, 50), 2),
        "relay_roundtrip_p99_ms": round(percentile(relay, 99), 2),
        "relays_per_s_under_load": round(len(relay) / relay_wall, 1),
        "server_cpu_ms_per_relay_roundtrip": round(1000 * relay_cpu / max(1, len(relay)), 3),
        "generator_cpu_s": round(sum(p["cpu_s"] for p in parts), 2),
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_kib_per_connection": round((rss_after - rss_before) / connections, 2),
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(load_after[0], 2),
        "server_code": server_code,
        "server_compression": "deflate" if args.compression else "none",
        "server_event_loop": loop_name,
        "generator_event_loop": args.generator_loop,
        "server_gc": "default" if args.default_gc else "tuned",
        "server_cpu": args.server_cpu,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=500, help="simulated workers (default 500)")
    parser.add_argument("--clients", type=int, default=50, help="simulated clients, each in a closed request loop (default 50)")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes the peers are spread over (default 2)")
    parser.add_argument("--rounds", type=int, default=20, help="discover rounds, then relay rounds, per client (default 20)")
    parser.add_argument("--idle-rounds", type=int, default=100, help="sequential discovers by one client on an idle server (default 100)")
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="seconds with every peer connected and silent but for heartbeats; reports the server's CPU share then (default 10, one heartbeat interval)")
    parser.add_argument("--discover-rate", type=float, default=500.0,
                        help="discovers per second offered in the open-loop phase, Poisson arrivals over all clients; latency counts from the scheduled time (default 500; 0 skips the phase)")
    parser.add_argument("--open-seconds", type=float, default=10.0, help="length of the open-loop discovery phase (default 10)")
    parser.add_argument("--concurrency", type=int, default=100, help="registrations in flight at once, over all generators (default 100)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", metavar="FILE", help="run the coordinator under cProfile (CPU time of its event-loop thread, not wall time: on a busy machine wall time mostly measures waiting) and write its stats to FILE (figures are then slower)")
    parser.add_argument("--compression", action="store_true", help="run the coordinator with permessage-deflate (server.compression = true; off by default)")
    parser.add_argument("--event-loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                        help="the coordinator's event loop, as server.event_loop (default auto: uvloop where installed)")
    parser.add_argument("--generator-loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                        help="the load generators' event loop (default auto: uvloop where installed, so a generator costs less CPU per simulated peer)")
    parser.add_argument("--default-gc", action="store_true",
                        help="run the coordinator with CPython's default GC thresholds instead of the ones `sleap-rtc server` sets (for before/after comparisons)")
    parser.add_argument("--server-cpu", type=int, metavar="N",
                        help="pin the coordinator to CPU N and the load generators to the other CPUs, so the server has a core of its own (default: no pinning)")
    parser.add_argument("--json", action="store_true", help="print one JSON line (default: indented JSON)")
    args = parser.parse_args()
    if args.procs < 1:
        parser.error("--procs must be at least 1")
    result = run(args)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
