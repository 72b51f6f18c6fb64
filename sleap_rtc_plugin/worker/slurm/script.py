"""The batch script the Slurm executor submits for one sleap-nn command."""

from __future__ import annotations

import shlex
from pathlib import Path

from .options import SlurmOptions


def _directive(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"#SBATCH value {value[:60]!r} spans lines")
    return f"#SBATCH {value}"


def render(opts: SlurmOptions, *, name: str, state_dir: Path, cwd: Path, argv: list[str],
           gpus: int | None = None, mem_mb: int | None = None) -> str:
    """A bash script: #SBATCH lines from the settings (and the job's own GPU/memory needs),
    then :mod:`.jobwrap` running ``argv``. ``--no-requeue``: a job Slurm restarts on its own
    would start training over; the worker's queue resumes it from a checkpoint instead."""
    n_gpus = opts.gpus if gpus is None else gpus
    lines = ["#!/bin/bash", _directive(f"--job-name={shlex.quote(name)}"),
             _directive(f"--output={state_dir / 'stdout.log'}"), _directive(f"--error={state_dir / 'stderr.log'}"),
             _directive(f"--chdir={cwd}"), _directive("--no-requeue"), _directive("--nodes=1"),
             _directive(f"--cpus-per-task={opts.cpus}"), _directive(f"--time={opts.time_limit}")]
    for flag, value in (("partition", opts.partition), ("account", opts.account), ("qos", opts.qos)):
        if value:
            lines.append(_directive(f"--{flag}={value}"))
    if opts.gres and n_gpus > 0:
        lines.append(_directive(f"--gres={opts.gres.format(gpus=n_gpus)}"))
    mem = opts.mem_mb if mem_mb is None else mem_mb
    if mem:
        lines.append(_directive(f"--mem={int(mem)}M"))
    lines += [_directive(extra) for extra in opts.extra_sbatch]
    wrap = [opts.python, "-P", "-m", "sleap_rtc_plugin.worker.slurm.jobwrap", str(state_dir), "--", *argv]
    lines += ["umask 077", "export PYTHONSAFEPATH=1 PYTHONUNBUFFERED=1 NO_COLOR=1 TERM=dumb WANDB_MODE=${WANDB_MODE:-disabled}",
              "exec " + " ".join(shlex.quote(a) for a in wrap), ""]
    return "\n".join(lines)
