"""Coordinator load benchmark: N workers + M clients against a coordinator subprocess.

Reports registrations/s, discovery latency (p50/p99), relay round-trip latency and the
server's memory per connection (RSS delta / connections) as JSON. The server runs in
its own process so its RSS is not mixed with the simulated peers'.

    python benchmarks/coordinator.py --workers 500 --clients 50 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sleap_rtc_plugin.coordinator import CoordinatorClient, create_room

SERVER_CODE = """
import asyncio, logging, sys, argparse
logging.basicConfig(level=logging.WARNING)
from sleap_rtc_plugin.coordinator.cli import run_server
args = argparse.Namespace(host="127.0.0.1", port=0, db=":memory:", heartbeat_interval=10.0, heartbeat_timeout=30.0)
sys.exit(asyncio.run(run_server(args)))
"""


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


def server_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def fake_gpus(rng: random.Random) -> list[dict]:
    if rng.random() < 0.1:
        return []
    total = rng.choice([8192, 12288, 24576, 49152, 81920])
    return [{"name": "sim", "memory_total_mb": total, "memory_free_mb": rng.randint(0, total)} for _ in range(rng.choice([1, 1, 2, 4]))]


async def bench(args: argparse.Namespace) -> dict:
    fd_limit = raise_fd_limit()
    needed = (args.workers + args.clients) * 2 + 100
    if fd_limit < needed:
        raise SystemExit(f"error: need ~{needed} file descriptors, RLIMIT_NOFILE allows {fd_limit}; lower --workers/--clients")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER_CODE], stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env)
    try:
        line = await asyncio.to_thread(proc.stdout.readline)
        if "listening on" not in line:
            raise SystemExit(f"error: coordinator did not start: {line!r}")
        url = line.strip().rsplit(" ", 1)[-1]
        room_id, token, _ = await create_room(url)
        await asyncio.sleep(0.2)
        rss_before = rss_kib(proc.pid)
        rng = random.Random(args.seed)
        sem = asyncio.Semaphore(args.concurrency)

        async def join(role: str, i: int) -> CoordinatorClient:
            meta = {"gpus": fake_gpus(rng), "labels": {"site": f"s{i % 4}"}} if role == "worker" else {}
            client = CoordinatorClient(url, room_id=room_id, token=token, role=role, peer_id=f"{role[0]}{i}", metadata=meta, reconnect=False, request_timeout=60)
            async with sem:
                await client.start()
            return client

        t0 = time.perf_counter()
        workers = await asyncio.gather(*(join("worker", i) for i in range(args.workers)))
        clients = await asyncio.gather(*(join("client", i) for i in range(args.clients)))
        reg_seconds = time.perf_counter() - t0
        await asyncio.sleep(0.5)
        rss_after = rss_kib(proc.pid)

        async def answer(worker: CoordinatorClient, relay) -> None:
            if relay.kind == "offer":
                await worker.relay(relay.source, "answer", {"sdp": "a"})

        for w in workers:
            w.add_relay_handler(lambda relay, w=w: answer(w, relay))

        discover_ms: list[float] = []
        relay_ms: list[float] = []
        returned: list[int] = []

        async def client_loop(client: CoordinatorClient) -> None:
            for _ in range(args.rounds):
                start = time.perf_counter()
                peers = await client.discover(min_gpu_memory_mb=rng.choice([None, 4096, 16384]), labels={"site": f"s{rng.randrange(4)}"} if rng.random() < 0.5 else None)
                discover_ms.append((time.perf_counter() - start) * 1000)
                returned.append(len(peers))
                target = rng.choice(workers).peer_id
                start = time.perf_counter()
                await client.relay(target, "offer", {"sdp": "o" * 2000})
                await client.next_relay("answer", source=target, timeout=60)
                relay_ms.append((time.perf_counter() - start) * 1000)

        idle_ms: list[float] = []
        for _ in range(100):
            start = time.perf_counter()
            await clients[0].discover(min_gpu_memory_mb=4096, labels={"site": "s1"})
            idle_ms.append((time.perf_counter() - start) * 1000)

        cpu_before = server_cpu_s(proc.pid)
        t1 = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for c in clients))
        load_seconds = time.perf_counter() - t1
        server_cpu_load = server_cpu_s(proc.pid) - cpu_before

        for c in [*workers, *clients]:
            await c.close()
        connections = args.workers + args.clients
        return {
            "benchmark": "coordinator",
            "workers": args.workers,
            "clients": args.clients,
            "rounds_per_client": args.rounds,
            "registrations_per_s": round(connections / reg_seconds, 1),
            "registration_seconds": round(reg_seconds, 3),
            "discover_idle_p50_ms": round(percentile(idle_ms, 50), 2),
            "discover_idle_p99_ms": round(percentile(idle_ms, 99), 2),
            "discover_under_load_p50_ms": round(percentile(discover_ms, 50), 2),
            "discover_under_load_p99_ms": round(percentile(discover_ms, 99), 2),
            "discover_mean_peers_returned": round(statistics.mean(returned), 1),
            "relay_roundtrip_p50_ms": round(percentile(relay_ms, 50), 2),
            "relay_roundtrip_p99_ms": round(percentile(relay_ms, 99), 2),
            "requests_per_s_under_load": round(2 * len(discover_ms) / load_seconds, 1),
            "server_cpu_ms_per_request_under_load": round(1000 * server_cpu_load / (2 * len(discover_ms)), 3),
            "server_rss_before_kib": rss_before,
            "server_rss_after_kib": rss_after,
            "server_kib_per_connection": round((rss_after - rss_before) / connections, 2),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
        }
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20, help="discover+relay rounds per client")
    parser.add_argument("--concurrency", type=int, default=100, help="registrations in flight at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: indented JSON)")
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
