"""benchmarks/coordinator.py runs end to end at a small size and its figures add up.

The benchmark is how issue 19's scale figures are made; a load generator that stopped
answering pings or relays, or an open-loop phase that sent nothing, would make its
numbers meaningless without failing — so a small run checks them here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "benchmarks" / "coordinator.py"


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_small_run_reports_every_phase(loop):
    pytest.importorskip("uvloop", reason="uvloop is not installed (the [server] extra)")
    out = subprocess.run(
        [sys.executable, str(BENCH), "--workers", "40", "--clients", "4", "--procs", "2", "--rounds", "3", "--idle-rounds", "3",
         "--idle-seconds", "0.5", "--discover-rate", "40", "--open-seconds", "1.5", "--event-loop", loop, "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout)
    assert r["server_event_loop"] == loop
    assert r["registrations_per_s"] > 0 and r["server_cpu_ms_per_registration"] > 0
    assert 0 < r["discover_mean_peers_returned"] <= 40
    assert r["discover_under_load_p99_ms"] >= r["discover_under_load_p50_ms"] > 0
    # ~40/s offered for 1.5 s: arrivals happened and were answered, measured from their schedule.
    assert 10 <= r["discover_open_loop_per_s"] * 1.5 <= 200
    assert r["discover_open_loop_max_ms"] >= r["discover_open_loop_p99_ms"] >= r["discover_open_loop_p50_ms"] > 0
    # Every relayed offer was answered by its simulated worker.
    assert r["relays_per_s_under_load"] > 0 and r["relay_roundtrip_p50_ms"] > 0
