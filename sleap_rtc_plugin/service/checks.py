"""Pre-flight checks that warn (never fail) before a service install.

A worker without a visible GPU still runs (CPU training), and a user service without
lingering still runs until logout; both are legitimate, so these only warn, with the
exact command that fixes the problem.
"""

from __future__ import annotations

import getpass
import shutil
from pathlib import Path
from typing import Callable

from .system_commands import Runner


def gpu_warning(dev: Path = Path("/dev"), which: Callable[[str], str | None] = shutil.which) -> str | None:
    """None when an NVIDIA device node or ``nvidia-smi`` is visible, else a warning line."""
    if any(dev.glob("nvidia[0-9]*")) or which("nvidia-smi"):
        return None
    return (
        f"no NVIDIA GPU visible (no {dev}/nvidia* device, no nvidia-smi on PATH); "
        "the worker will run on CPU. Check the driver with `nvidia-smi`."
    )


def linger_warning(runner: Runner, user: str | None = None) -> str | None:
    """For user services: None when lingering is on, else a warning with the fix."""
    user = user or getpass.getuser()
    result = runner.run(["loginctl", "show-user", user, "-p", "Linger"])
    value = result.stdout.strip().partition("=")[2].strip() if result.returncode == 0 else ""
    if value == "yes":
        return None
    why = "is off" if value == "no" else "could not be checked" + (f" ({result.stderr.strip()})" if result.stderr.strip() else "")
    return (
        f"lingering for {user} {why}: the user service stops at logout and does not start at boot. "
        f"Fix: sudo loginctl enable-linger {user}"
    )
