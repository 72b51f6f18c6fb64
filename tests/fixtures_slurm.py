"""A real single-node Slurm cluster for the Slurm executor's tests, started in the foreground.

``munged`` (as the munge user, its own key and socket), ``slurmctld -D`` and ``slurmd -D`` run
from a temp dir with a generated ``slurm.conf`` (one node with this machine's CPUs, no systemd,
no cgroups, accounting off). Everything is torn down at the end of the session; a test module
skips with a one-line reason only when the daemons cannot start (no packages, not root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


#: The node's GPUs as Slurm counts them (no device files: Slurm schedules them, jobs train on CPU).
GPU_TYPE, GPUS = "testgpu", 2


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    node: str
    partition: str = "debug"

    @property
    def env(self) -> dict[str, str]:
        """What a Slurm client command (sbatch, squeue, …) needs to find this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> str:
        # cwd: an sbatch --wrap without --output writes slurm-<id>.out there, not into the checkout.
        out = subprocess.run(list(argv), env={**os.environ, **self.env}, capture_output=True, text=True, timeout=30, cwd=self.root)
        return out.stdout

    def jobs(self) -> list[str]:
        """Ids of the jobs Slurm still lists (pending, running or completing)."""
        return [line.split()[0] for line in self.run("squeue", "-h", "-o", "%i %T").splitlines() if line.strip()]


def _why_not() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return "the Slurm tests start slurmd and munged, which needs root"
    missing = [cmd for cmd in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo") if shutil.which(cmd) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "there is no munge user (apt-get install munge)"
    return None


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _slurm_conf(root: Path, node: str, cpus: int, socket_path: Path) -> str:
    return f"""ClusterName=sleaprtc
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={socket_path}
CredType=cred/munge
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/slurmd.%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
GresTypes=gpu
NodeName={node} CPUs={cpus} RealMemory=2000 Gres=gpu:{GPU_TYPE}:{GPUS} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def slurm_cluster():
    why = _why_not()
    if why:
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="sleaprtc-slurm-"))
    root.chmod(0o755)
    munge = pwd.getpwnam("munge")
    mdir = root / "munge"
    mdir.mkdir(mode=0o700)
    key = mdir / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    for path in (mdir, key):
        os.chown(path, munge.pw_uid, munge.pw_gid)
    rundir = root / "munge-run"  # munged wants its socket's dir open to all (x) and owned by it
    rundir.mkdir(mode=0o755)
    os.chown(rundir, munge.pw_uid, munge.pw_gid)
    sock = rundir / "munge.socket"
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, node, os.cpu_count() or 1, sock))
    for i in range(GPUS):  # stand-ins for /dev/nvidiaN: character devices like /dev/null (Slurm checks the type)
        os.mknod(root / f"fakegpu{i}", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    (root / "gres.conf").write_text(f"NodeName={node} Name=gpu Type={GPU_TYPE} File={root}/fakegpu[0-{GPUS - 1}]\n")
    procs: list[subprocess.Popen] = []
    log = open(root / "daemons.out", "wb")
    try:
        procs.append(subprocess.Popen(
            ["munged", "-F", f"--socket={sock}", f"--key-file={key}", f"--pid-file={rundir}/munged.pid",
             f"--log-file={mdir}/munged.log", f"--seed-file={mdir}/munged.seed"],
            user=munge.pw_uid, group=munge.pw_gid, stdout=log, stderr=log))
        if not _wait_for(sock.exists, 10):
            pytest.skip(f"munged did not start (see {mdir}/munged.log)")
        env = {**os.environ, "SLURM_CONF": str(conf)}
        procs.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)], env=env, stdout=log, stderr=log))
        procs.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf)], env=env, stdout=log, stderr=log))
        cluster = SlurmCluster(root, conf, node)

        def idle() -> bool:
            return any(w in cluster.run("sinfo", "-h", "-o", "%t") for w in ("idle", "mix"))

        if not _wait_for(idle, 30):
            pytest.skip(f"slurmctld/slurmd did not bring the node up (see {root}/slurmctld.log)")
        yield cluster
    finally:
        for proc in reversed(procs):
            _stop(proc)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
