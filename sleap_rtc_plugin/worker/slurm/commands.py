"""Slurm's command-line tools, called asynchronously, their output parsed in one place.

Job state comes from ``scontrol show job -o`` (and ``squeue`` for the queue position),
not ``sacct``: accounting storage is optional on a cluster and often off, while
slurmctld keeps a finished job's record for ``MinJobAge`` seconds (300 by default),
far longer than the executor's poll interval. A job gone from slurmctld is read from
the exit file the job itself writes (:mod:`.jobwrap`).
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass

#: States in which a job will not run again.
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                      "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"})
#: Endings that are the cluster's doing, not the job's: the queue retries them from the last checkpoint.
INFRASTRUCTURE = frozenset({"TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"})
_JOB_ID = re.compile(r"^(\d+)(;[\w.-]+)?$")


class SlurmError(RuntimeError):
    """A Slurm command failed; ``str()`` is one line with its stderr."""


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    node: str = ""
    partition: str = ""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


async def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 60.0) -> str:
    """Run one Slurm command; its stdout, or :class:`SlurmError` with its stderr."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} is not installed on this machine: the Slurm executor needs Slurm's client tools") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise SlurmError(f"{argv[0]} did not answer within {timeout:g}s (is slurmctld up?)") from None
    if proc.returncode != 0:
        text = err.decode("utf-8", "replace").strip().splitlines()
        raise SlurmError(f"{' '.join(argv[:2])} failed: {text[-1] if text else f'exit {proc.returncode}'}")
    return out.decode("utf-8", "replace")


async def sbatch(script: str, env: dict[str, str] | None = None) -> str:
    """Submit a batch script file; the Slurm job id."""
    out = (await run(["sbatch", "--parsable", script], env)).strip()
    m = _JOB_ID.match(out.splitlines()[-1] if out else "")
    if not m:
        raise SlurmError(f"sbatch answered {out[:80]!r}, not a job id")
    return m.group(1)


def parse_scontrol(text: str) -> dict[str, str]:
    """``scontrol show job -o`` → fields (values never contain spaces except ``Command``/paths, kept whole)."""
    fields: dict[str, str] = {}
    for m in re.finditer(r"(\w[\w/:]*)=(.*?)(?=\s+\w[\w/:]*=|\s*$)", text.strip()):
        fields.setdefault(m.group(1), m.group(2))
    return fields


async def job_info(job_id: str, env: dict[str, str] | None = None) -> JobInfo | None:
    """The job as slurmctld knows it, or None when it has no record of it (purged, unknown)."""
    try:
        out = await run(["scontrol", "show", "job", "-o", job_id], env)
    except SlurmError as exc:
        if "Invalid job id" in str(exc):
            return None
        raise
    f = parse_scontrol(out.splitlines()[0] if out.strip() else "")
    if not f.get("JobState"):
        return None
    code, _, sig = f.get("ExitCode", "").partition(":")
    return JobInfo(job_id, f["JobState"].split()[0], f.get("Reason", "None"),
                   int(code) if code.isdigit() else None, int(sig) if sig.isdigit() else None,
                   f.get("NodeList", ""), f.get("Partition", ""))


async def queue_position(job_id: str, env: dict[str, str] | None = None) -> int | None:
    """1-based place of a pending job among the pending jobs of its partition, by priority."""
    info = await run(["squeue", "-h", "-j", job_id, "-o", "%P"], env)
    partition = info.strip().split(",")[0]
    if not partition:
        return None
    ids = (await run(["squeue", "-h", "-t", "PENDING", "-p", partition, "--sort=-p,i", "-o", "%i"], env)).split()
    return ids.index(job_id) + 1 if job_id in ids else None


async def scancel(job_id: str, *, signal: str | None = None, env: dict[str, str] | None = None) -> None:
    """Signal every process of the job (``--full``: the batch shell too), or end it (no signal)."""
    argv = ["scancel", "--full", f"--signal={signal}", job_id] if signal else ["scancel", job_id]
    try:
        await run(argv, env)
    except SlurmError as exc:
        if "already completed" in str(exc) or "Invalid job id" in str(exc):
            return
        raise
