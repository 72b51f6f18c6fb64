"""What a Slurm-fronting worker advertises: the cluster's GPUs from ``sinfo``, in the
shape discovery and queue requirements already read (``accelerator``, ``gpus``).

``gpus`` lists the GPUs one job could get right now: those free on the node with the
most free GPUs in the configured partition (a job's GPUs come from one node). Their
memory comes from ``[worker.slurm] gpu_memory_mb`` (sinfo does not know it). The
whole picture per partition goes under ``slurm`` for people choosing a worker.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
from typing import Any, Callable

from ..gpu import capabilities
from .options import SlurmOptions

log = logging.getLogger(__name__)

_FIELDS = ("NodeHost", "Partition", "StateLong", "Gres", "GresUsed")
_GRES = re.compile(r"gpu(?::([\w.-]+))?:(\d+)")
_FREE_STATES = ("idle", "mixed")


def parse_gpus(gres: str) -> dict[str, int]:
    """``gpu:a100:4(S:0-1),gpu:v100:2`` → ``{"a100": 4, "v100": 2}`` (untyped: ``gpu``)."""
    counts: dict[str, int] = {}
    for part in re.split(r",(?![^(]*\))", gres or ""):
        m = _GRES.match(part.strip())
        if m:
            counts[m.group(1) or "gpu"] = counts.get(m.group(1) or "gpu", 0) + int(m.group(2))
    return counts


def _text(counts: dict[str, int]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(counts.items()))


def sinfo_nodes(opts: SlurmOptions) -> list[dict[str, Any]]:
    """One row per (node, partition): name, partition, state, total and used GPUs by type."""
    fmt = ",".join(f"{f}:300|" for f in _FIELDS)
    argv = ["sinfo", "-h", "-N", "-O", fmt] + (["-p", opts.partition] if opts.partition else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={**os.environ, **opts.command_env}, check=True).stdout
    rows = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < len(_FIELDS):
            continue
        node, partition, state, gres, used = cells[:5]
        rows.append({"node": node, "partition": partition.rstrip("*"), "state": state.lower(),
                     "gpus": parse_gpus(gres), "used": parse_gpus(used)})
    return rows


def summarize(rows: list[dict[str, Any]], opts: SlurmOptions) -> dict[str, Any]:
    """The metadata fields of a Slurm worker from ``sinfo`` rows."""
    partitions: dict[str, dict[str, Any]] = {}
    best: dict[str, int] = {}
    for row in rows:
        p = partitions.setdefault(row["partition"], {"name": row["partition"], "nodes": 0, "free_nodes": 0, "gpus": {}, "free_gpus": {}})
        usable = row["state"].split("+")[0] in _FREE_STATES
        p["nodes"] += 1
        p["free_nodes"] += int(row["state"].split("+")[0] == "idle")
        free = {k: max(0, v - row["used"].get(k, 0)) for k, v in row["gpus"].items()} if usable else {}
        for k, v in row["gpus"].items():
            p["gpus"][k] = p["gpus"].get(k, 0) + v
        for k, v in free.items():
            p["free_gpus"][k] = p["free_gpus"].get(k, 0) + v
        if sum(free.values()) > sum(best.values()):
            best = free
    gpus: list[dict[str, Any]] = []
    for name, count in sorted(best.items()):
        memory = int(opts.gpu_memory_mb.get(name, 0))
        gpus += [{"index": len(gpus), "name": name, "memory_total_mb": memory, "memory_free_mb": memory} for _ in range(count)]
    summary = [{**p, "gpus": _text(p["gpus"]), "free_gpus": _text(p["free_gpus"])} for p in partitions.values()]
    return {"accelerator": "cuda" if gpus else "cpu", "gpus": gpus[:64], "executor": "slurm", "slurm": {"partitions": summary[:32]}}


def slurm_capabilities(opts: SlurmOptions, base: Callable[[], dict] = capabilities) -> dict[str, Any]:
    """The worker's probe under the Slurm executor (blocking; the agent runs it in a thread)."""
    caps = base()
    try:
        caps.update(summarize(sinfo_nodes(opts), opts))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("sinfo failed (%s); advertising no cluster GPUs until it answers", exc)
        caps.update({"accelerator": "cpu", "gpus": [], "executor": "slurm", "slurm": {"error": str(exc)[:200]}})
    return caps


def probe_for(opts: SlurmOptions) -> Callable[[], dict[str, Any]]:
    return functools.partial(slurm_capabilities, opts)
