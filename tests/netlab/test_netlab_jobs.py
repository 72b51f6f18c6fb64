"""The product across the lab: a coordinator (with TURN credentials) and coturn on the
"internet", a worker in site B, a client in site A -- all as the CLI starts them.

A real tiny training job runs across topologies (b) NAT both sides, (c) port-changing NAT
→ TURN UDP and (d) UDP blocked → TURN TCP, with the model verified and the bulk path
reported (no direct TCP path is tried where there is no host-to-host pair); then
``sleap-rtc doctor`` from site A says, one line per check, what works and what to open.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures_netlab import COORDINATOR_IP, TURN_IP, TURN_SECRET
from fixtures_data import sample_labels, sample_root  # noqa: F401
from sleap_rtc_plugin import sample_data

pytestmark = pytest.mark.netlab

SERVER = f"ws://{COORDINATOR_IP}:443"
TURN_ENV = {
    "SLEAP_RTC_SERVER_TURN_SECRET": TURN_SECRET,
    "SLEAP_RTC_SERVER_TURN_URLS": f"turn:{TURN_IP}:3478?transport=udp,turn:{TURN_IP}:3478?transport=tcp,turns:{TURN_IP}:443?transport=tcp",
    "SLEAP_RTC_SERVER_STUN_URLS": f"stun:{TURN_IP}:3478",
    "SLEAP_RTC_SERVER_TURN_TTL": "600",
}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sleap_rtc_plugin", *args]


@pytest.fixture(scope="module")
def services(netlab, tmp_path_factory):
    """Coordinator in the internet namespace, one worker in site B; yields the session string."""
    work = tmp_path_factory.mktemp("services")
    netlab.topology("b")
    netlab.popen("inet", cli("server", "--host", COORDINATOR_IP, "--port", "443", "--db", str(work / "coord.sqlite3")),
                 env=netlab.env(**TURN_ENV), stdout=open(work / "server.log", "w"), stderr=subprocess.STDOUT)
    netlab.wait_tcp("inet", COORDINATOR_IP, 443)
    made = netlab.run("b1", *cli("room", "create", "--server", SERVER, "--json"), check=False)
    assert made.returncode == 0, made.stderr
    room = json.loads(made.stdout)
    log = work / "worker.log"
    netlab.popen("b1", cli("worker", "--server", SERVER, "--room-id", room["room_id"], "--token", room["token"], "--room-secret",
                           "lab-room-secret-0123456789", "--name", "site-b-gpu", "--data-dir", str(work / "worker-data"), "--status-port", "0", "-v"),
                 env=netlab.env(), stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = re.search(r"session file: (\S+)", log.read_text())
        if found and Path(found.group(1)).is_file():
            yield Path(found.group(1)).read_text().strip(), log
            return
        time.sleep(0.5)
    raise AssertionError("worker did not print a session string:\n" + log.read_text()[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize("topology,kind,transport", [("b", "srflx", None), ("c", "relay", "udp"), ("d", "relay", "tcp")])
def test_training_job_across_the_lab(netlab, services, sample_labels, tmp_path, topology, kind, transport):  # noqa: F811
    session, worker_log = services
    netlab.topology(topology)
    package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=2)
    project = tmp_path / "project"
    done = netlab.run("a1", *cli("client-train", "--session-string", session, "--pkg-path", str(package), "--project-dir", str(project),
                                 "--no-progress", "-v"), check=False, env=netlab.env(), timeout=420)
    assert done.returncode == 0, done.stderr[-4000:]
    models = list((project / "models").iterdir())
    assert len(models) == 1 and (models[0] / "best.ckpt").is_file() and "model:" in done.stdout
    assert "[connected] connected to the worker" in done.stderr  # plain words on the display
    connected = re.search(r"job \w+: path (\w+)( via TURN (\w+))?", done.stderr)  # the pair, in the -v log
    assert connected, done.stderr[-3000:]
    assert connected.group(1) == kind
    if kind == "relay" and connected.group(3):
        assert connected.group(3) == transport
    # No host-to-host pair across two sites: the direct TCP path is not attempted; the data channel carries it.
    assert re.search(r"sent \S+ .*via datachannel", done.stderr), done.stderr[-3000:]
    assert "via direct" not in done.stderr


@pytest.mark.parametrize("topology", ["b", "d", "e"])
def test_doctor_says_what_works_and_what_to_open(netlab, services, topology):
    session, _ = services
    netlab.topology(topology)
    done = netlab.run("a1", *cli("doctor", "--session-string", session, "--timeout", "3"), check=False, env=netlab.env(), timeout=120)
    lines = {line.split()[1] + ("" if line.split()[1] not in ("turn", "stun") else " " + line.split()[2]): line
             for line in done.stdout.splitlines() if line[:4] in ("ok  ", "FAIL", "skip")}
    assert lines["coordinator"].startswith("ok"), done.stdout + done.stderr
    assert lines["room"].startswith("ok") and "TURN credentials issued" in lines["room"]
    worker = lines["worker"]
    if topology == "b":
        assert done.returncode == 0, done.stdout
        assert all(line.startswith("ok") for line in lines.values()), done.stdout
        assert "path srflx" in worker
    if topology == "d":
        assert done.returncode == 1
        assert lines[f"stun {TURN_IP}:3478"].startswith("FAIL") and f"open outbound UDP to {TURN_IP}:3478" in lines[f"stun {TURN_IP}:3478"]
        assert lines["turn udp"].startswith("FAIL") and f"open outbound UDP 3478 to {TURN_IP}" in lines["turn udp"]
        assert lines["turn tcp"].startswith("ok") and lines["turn tls"].startswith("ok")
        assert worker.startswith("ok") and "path relay via TURN tcp" in worker
    if topology == "e":
        assert lines["turn tcp"].startswith("FAIL") and f"open outbound TCP 3478 to {TURN_IP}" in lines["turn tcp"]
        assert lines["turn tls"].startswith("ok")
        assert worker.startswith("ok") and "path relay via TURN tls" in worker
