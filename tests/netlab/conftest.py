"""The network lab as a pytest fixture: one lab per test module, torn down even on failure.

``netlab`` yields a :class:`Lab`: the namespaces of ``fixtures_netlab.NetLab`` plus a
real coturn (STUN/TURN over UDP and TCP on 3478, TLS on 443) in the "internet"
namespace, configured for TURN REST credentials with ``TURN_SECRET``. Tests skip with one
line where namespaces cannot be made (not root) or coturn is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures_netlab import COORDINATOR_IP, TURN_IP, NetLab, leftover_namespaces, unavailable_reason, write_self_signed

TURN_SECRET = "lab-turn-secret-0123456789"
TURN_REALM = "sleap-lab"
PROBE = Path(__file__).with_name("peer_probe.py")


class Lab(NetLab):
    """A built lab with coturn running; helpers to run the project's processes inside it."""

    workdir: Path
    cert: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for project processes in the lab: real addresses only (no loopback
        candidate), the lab's certificate trusted for ``turns:``/``wss://``."""
        env = {k: v for k, v in os.environ.items() if k != "SLEAP_RTC_ICE_LOOPBACK"}
        env.update(SSL_CERT_FILE=str(self.cert), SLEAP_RTC_TLS_CA=str(self.cert), PYTHONUNBUFFERED="1", **extra)
        return env

    def start_coturn(self) -> None:
        log = self.workdir / "turnserver.log"
        self.popen("inet", [
            "turnserver", "-n", "--listening-ip", TURN_IP, "--relay-ip", TURN_IP, "--listening-port", "3478",
            "--tls-listening-port", "443", "--cert", str(self.cert), "--pkey", str(self.cert.with_name("lab-key.pem")),
            "--use-auth-secret", "--static-auth-secret", TURN_SECRET, "--realm", TURN_REALM, "--no-cli", "--no-dtls",
            "--log-file", str(log), "--simple-log", "--pidfile", str(self.workdir / "turn.pid"),
            "--userdb", str(self.workdir / "turndb"), "--no-rfc5780", "--relay-threads", "0", *(["--verbose"] if os.environ.get("LAB_LOG") else []),
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_tcp("inet", TURN_IP, 3478)
        self.wait_tcp("inet", TURN_IP, 443)

    def wait_tcp(self, name: str, host: str, port: int, timeout: float = 20.0) -> None:
        code = f"import socket; socket.create_connection(({host!r}, {port}), 1).close()"
        deadline = time.monotonic() + timeout
        while self.run(name, sys.executable, "-c", code, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {host}:{port} in {name} after {timeout:g} s")
            time.sleep(0.2)

    def connect_pair(self, offer_host: str, answer_host: str, ice_offer: list, ice_answer: list, timeout: float = 30.0,
                     tuned: bool = False) -> tuple[dict, dict]:
        """Open a real aiortc link from ``offer_host`` to ``answer_host`` (namespaces), relaying
        the SDP between them; returns each side's ``{"path": ..., "setup_s": ...}``."""
        def start(host: str, role: str, ice: list) -> subprocess.Popen:
            return self.popen(host, [sys.executable, str(PROBE), role, "--ice", json.dumps(ice), "--timeout", str(timeout), *(["--tuned"] if tuned else [])],
                              env=self.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        offer, answer = start(offer_host, "offer", ice_offer), start(answer_host, "answer", ice_answer)
        try:
            for src, dst in ((offer, answer), (answer, offer)):
                line = src.stdout.readline()
                if not line:
                    raise RuntimeError(f"peer probe gave no SDP: {src.stderr.read()[-2000:]}")
                dst.stdin.write(json.dumps(json.loads(line)["sdp"]) + "\n")
                dst.stdin.flush()
            outputs = [proc.communicate(timeout=timeout + 15) for proc in (offer, answer)]
            if offer.returncode or answer.returncode:
                keep = int(os.environ.get("LAB_ERR", 3000))
                raise RuntimeError("peer probe failed: " + "\n".join(f"--- {role} ({proc.returncode}):\n{err[-keep:]}"
                                   for role, proc, (_, err) in zip(("offer", "answer"), (offer, answer), outputs)))
            a, b = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
            return a, b
        finally:
            for proc in (offer, answer):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="module")
def netlab(tmp_path_factory):
    reason = unavailable_reason()
    if reason is None and shutil.which("turnserver") is None:
        reason = "network lab needs coturn's `turnserver` (apt-get install coturn)"
    if reason:
        pytest.skip(reason)
    lab = Lab()
    lab.workdir = tmp_path_factory.mktemp("netlab")
    lab.cert, _ = write_self_signed(lab.workdir, TURN_IP, COORDINATOR_IP)
    try:
        lab.build()
        lab.start_coturn()
        yield lab
    finally:
        lab.close()
        mine = [name for name in leftover_namespaces() if name.startswith(f"srtc{lab.tag}-")]
        assert not mine, f"lab namespaces left behind: {mine}"


__all__ = ["COORDINATOR_IP", "TURN_IP", "TURN_SECRET", "Lab", "socket"]
