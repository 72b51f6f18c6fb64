"""How the worker starts a ``sleap-nn`` child: its argv prefix and its environment.

Kept apart from the runner so the parity benchmark and tests can compare it with
what SLEAP's own runner (``sleap/gui/learning/runners.py``) would start for the
same job: any difference there is a difference in training speed or behaviour.
"""

from __future__ import annotations

import os


def sleap_nn_argv(python: str, *args: str) -> list[str]:
    """``python -P -m sleap_nn.cli ARGS`` reached through :mod:`.orphan_guard`, which
    ties sleap-nn's life to this worker's and then execs exactly that command. The
    module form works in any venv layout and keeps ``__main__.__spec__`` set, which
    sleap-nn needs for multi-GPU respawn."""
    return [python, *DELIBERATE_FLAGS, "-m", "sleap_rtc_plugin.worker.orphan_guard", str(os.getpid()), *args]


#: Interpreter flags the worker adds to SLEAP's ``python -m ...``: ``-P`` keeps a file in the
#: job dir (sent by a remote client) from shadowing a module such as ``torch``. Measured to
#: cost nothing (``benchmarks/parity.py``, docs/performance.md).
DELIBERATE_FLAGS: tuple[str, ...] = ("-P",)

#: Every variable the worker's sleap-nn child has that SLEAP's own child (which inherits
#: the GUI's environment unchanged) would not. None changes threads, devices or
#: scheduling; ``tests/test_worker_child_parity.py`` compares against SLEAP's runner.
DELIBERATE_ENV: dict[str, str] = {
    "PYTHONSAFEPATH": "1",  # as -P, for interpreters that re-exec (multi-GPU respawn)
    "PYTHONUNBUFFERED": "1",  # stdout is a pipe here, a terminal for SLEAP: keep lines prompt
    "NO_COLOR": "1",  # no ANSI escapes in the log lines relayed to the client
    "TERM": "dumb",
    "WANDB_MODE": "disabled",  # unless the lab sets WANDB_MODE: a shared worker uploads nowhere by default
}

#: Substrings of variable names that change training speed; none may be in DELIBERATE_ENV.
SPEED_VARIABLES: tuple[str, ...] = ("THREADS", "CUDA", "OMP", "MKL", "KMP", "GOMP", "NCCL", "PYTORCH", "TORCH", "ROCR", "HIP_")


def _child_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The worker's environment plus :data:`DELIBERATE_ENV` (``WANDB_MODE`` only where unset) and ``extra``."""
    env = dict(os.environ)
    env.update({k: v for k, v in DELIBERATE_ENV.items() if k != "WANDB_MODE"})
    env.setdefault("WANDB_MODE", DELIBERATE_ENV["WANDB_MODE"])
    if extra:
        env.update(extra)
    return env
