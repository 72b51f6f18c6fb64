"""A network lab built from Linux network namespaces: two sites behind NAT routers and an "internet".

::

    site A LAN 10.0.1.0/24            "internet"                    site B LAN 10.0.2.0/24
    a1 .2 ─┐                   ┌──────────────────────┐
           ├─ lan │ ra │ wan ──┤ inet: 203.0.113.1  coordinator ├── wan │ rb │ lan ─── b1 .2
    a2 .3 ─┘  .1    198.51.100.2  203.0.113.2  coturn    198.51.100.6   .1
                               └──────────────────────┘

Each router masquerades its LAN behind its WAN address (``nat="eim"``: Linux keeps
the source port, so a mapping is reused for every destination and hole punching works;
``nat="random"``: ``fully-random``, a new port per destination, so hole punching
fails) and may filter what its LAN sends out (``firewall="open"|"no_udp"|"tcp443"``).
Unsolicited packets from the WAN are dropped before
conntrack commits them (as a real NAT's filter does; otherwise a peer's early probe
would occupy the mapping and the NAT would move the next outbound flow to another
port). LAN addresses are not routed on the internet, so cross-site host candidates fail as
they do in real life. Every name and address lives in namespaces this lab creates;
:meth:`NetLab.close` deletes them (and the processes started in them), also after a
failure. Requires root, ``ip`` and ``nft`` (``tc`` for :meth:`NetLab.shape`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

INET = "inet"
SITES = {"a": ("ra", "198.51.100.2", "198.51.100.1", "10.0.1"), "b": ("rb", "198.51.100.6", "198.51.100.5", "10.0.2")}
HOSTS = {"a1": ("a", 2), "a2": ("a", 3), "b1": ("b", 2)}
COORDINATOR_IP = "203.0.113.1"
TURN_IP = "203.0.113.2"


def unavailable_reason() -> str | None:
    """Why this machine cannot build the lab (one line), or None when it can."""
    if sys.platform != "linux":
        return "network lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "network lab needs root (network namespaces, nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"network lab needs `{tool}` (apt-get install iproute2 nftables)"
    probe = f"srtcprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*argv: str, check: bool = True, input: str | None = None, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), capture_output=True, text=True, input=input, **kw)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


class NetLab:
    """The namespaces, links and rules of one lab; ``with NetLab() as lab: ...``."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen] = []
        self.site_config: dict[str, tuple[str, str]] = {}

    def ns(self, name: str) -> str:
        return f"srtc{self.tag}-{name}"

    def run(self, name: str, *argv: str, check: bool = True, input: str | None = None, **kw) -> subprocess.CompletedProcess:
        """Run ``argv`` in namespace ``name`` to completion (``env=``, ``timeout=`` as for subprocess.run)."""
        return sh("ip", "netns", "exec", self.ns(name), *argv, check=check, input=input, **kw)

    def popen(self, name: str, argv: Iterable[str], *, env: dict | None = None, **kw) -> subprocess.Popen:
        """Start ``argv`` inside namespace ``name``; stopped by :meth:`close` at the latest."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(name), *argv], env=env, start_new_session=True, **kw)
        self.processes.append(proc)
        return proc

    # -- building ---------------------------------------------------------------------------

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", self.ns(name))
        self.namespaces.append(name)
        self.run(name, "ip", "link", "set", "lo", "up")

    def _veth(self, a: str, a_dev: str, b: str, b_dev: str) -> None:
        sh("ip", "-n", self.ns(a), "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", self.ns(b))
        self.run(a, "ip", "link", "set", a_dev, "up")
        self.run(b, "ip", "link", "set", b_dev, "up")

    def build(self) -> "NetLab":
        self._add_ns(INET)
        self.run(INET, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.run(INET, "ip", "addr", "add", f"{COORDINATOR_IP}/32", "dev", "lo")
        self.run(INET, "ip", "addr", "add", f"{TURN_IP}/32", "dev", "lo")
        # Like the real internet, silently drop what has no route (private LAN addresses): an
        # "unreachable" error on coturn's relay socket would tear the whole allocation down.
        self._add_ns("void")  # a host that forwards nothing
        self._veth(INET, "sink", "void", "eth0")
        self.run(INET, "ip", "addr", "add", "192.0.2.1/30", "dev", "sink")
        self.run("void", "ip", "addr", "add", "192.0.2.2/30", "dev", "eth0")
        self.run(INET, "ip", "route", "add", "default", "via", "192.0.2.2")
        for site, (router, wan_ip, inet_ip, lan) in SITES.items():
            self._add_ns(router)
            self.run(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self._veth(INET, f"to-{site}", router, "wan")
            self.run(INET, "ip", "addr", "add", f"{inet_ip}/30", "dev", f"to-{site}")
            self.run(router, "ip", "addr", "add", f"{wan_ip}/30", "dev", "wan")
            self.run(router, "ip", "route", "add", "default", "via", inet_ip)
            self.run(router, "ip", "link", "add", "lan", "type", "bridge")
            self.run(router, "ip", "addr", "add", f"{lan}.1/24", "dev", "lan")
            self.run(router, "ip", "link", "set", "lan", "up")
            self.configure(site)
        for host, (site, octet) in HOSTS.items():
            router, _, _, lan = SITES[site]
            self._add_ns(host)
            self._veth(router, f"p-{host}", host, "eth0")
            self.run(router, "ip", "link", "set", f"p-{host}", "master", "lan")
            self.run(host, "ip", "addr", "add", f"{lan}.{octet}/24", "dev", "eth0")
            self.run(host, "ip", "route", "add", "default", "via", f"{lan}.1")
        return self

    def configure(self, site: str, *, nat: str = "eim", firewall: str = "open") -> None:
        """Set site ``site``'s NAT behaviour and outbound firewall (replacing the previous ones)."""
        if nat not in ("eim", "random") or firewall not in ("open", "no_udp", "tcp443"):
            raise ValueError(f"unknown nat {nat!r} / firewall {firewall!r}")
        if self.site_config.get(site) == (nat, firewall):
            return
        router = SITES[site][0]
        masquerade = "masquerade fully-random" if nat == "random" else "masquerade"
        rules = {
            "open": "",
            "no_udp": 'iifname "lan" meta l4proto udp drop',
            "tcp443": 'iifname "lan" tcp dport 443 accept\n    iifname "lan" drop',
        }[firewall]
        ruleset = f"""flush ruleset
table ip lab {{
  chain masq {{ type nat hook postrouting priority 100; oifname "wan" {masquerade}; }}
  chain unsolicited {{ type filter hook prerouting priority -150; iifname "wan" ct state new drop; }}
  chain outbound {{
    type filter hook forward priority 0; policy accept;
    {rules}
  }}
}}
"""
        self.run(router, "nft", "-f", "-", input=ruleset)
        self.site_config[site] = (nat, firewall)

    def topology(self, name: str) -> None:
        """Apply one of the issue's topologies: a (same LAN), b (EIM NAT both), c (random NAT at A),
        d (A drops outbound UDP), e (A allows only TCP 443 out)."""
        a = {"a": ("eim", "open"), "b": ("eim", "open"), "c": ("random", "open"), "d": ("eim", "no_udp"), "e": ("eim", "tcp443")}[name]
        self.configure("a", nat=a[0], firewall=a[1])
        self.configure("b", nat="eim", firewall="open")

    def shape(self, rate: str | None) -> None:
        """Limit every link a byte between a1/a2 and b1 crosses to ``rate`` (``"100mbit"``,
        ``"1gbit"``) in both directions with ``tc tbf``; None removes the limits."""
        links = [(INET, "to-a"), (INET, "to-b"), ("ra", "wan"), ("rb", "wan"), ("a1", "eth0"), ("a2", "eth0"), ("b1", "eth0")]
        for name, dev in links:
            self.run(name, "tc", "qdisc", "del", "dev", dev, "root", check=False)
            if rate:
                bits = _bits(rate)
                burst = max(bits // 8 // 250, 64 * 1024)  # >= 4 ms of line rate: a 1 Gbit/s tbf needs it at HZ=250
                self.run(name, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", str(burst), "latency", "50ms")

    def address(self, host: str) -> str:
        site, octet = HOSTS[host]
        return f"{SITES[site][3]}.{octet}"

    # -- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(10)
                except Exception:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", self.ns(name), check=False)
        self.namespaces.clear()

    def __enter__(self) -> "NetLab":
        try:
            return self.build()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()


def _bits(rate: str) -> int:
    rate = rate.lower()
    for suffix, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if rate.endswith(suffix):
            return int(float(rate[: -len(suffix)]) * scale)
    return int(rate)


def leftover_namespaces() -> list[str]:
    """Lab namespaces that exist now (a teardown check)."""
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("srtc")]


def write_self_signed(directory: Path, *ips: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``ips`` (for ``turns:`` and ``wss://`` in the lab)."""
    cert, key = directory / "lab-cert.pem", directory / "lab-key.pem"
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ips[0]}",
       "-addext", "subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips), "-keyout", str(key), "-out", str(cert))
    return cert, key


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
