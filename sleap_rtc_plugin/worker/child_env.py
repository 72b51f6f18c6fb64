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
    return [python, "-P", "-m", "sleap_rtc_plugin.worker.orphan_guard", str(os.getpid()), *args]


def _child_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONSAFEPATH": "1",
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
            "TERM": "dumb",
            "WANDB_MODE": env.get("WANDB_MODE", "disabled"),
        }
    )
    if extra:
        env.update(extra)
    return env
