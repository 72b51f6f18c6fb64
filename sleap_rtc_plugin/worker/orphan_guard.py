"""Start sleap-nn so that it dies with the worker, even when the worker is SIGKILLed.

sleap-nn runs in its own session (so cancel can signal its whole process group),
which also means nothing kills it when the worker vanishes: an OOM kill or
``kill -9`` of a worker outside systemd would leave a training holding the GPU.
On Linux this shim asks the kernel for SIGKILL when its parent dies
(``PR_SET_PDEATHSIG``, kept across ``execve``), checks the parent is still the one
that started it, then replaces itself with ``python -P -m sleap_nn.cli ARGS``: the
process that runs is exactly the one the runner asked for.

    python -P -m sleap_rtc_plugin.worker.orphan_guard PARENT_PID ARGS...
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, args = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:
            sys.exit("sleap-rtc worker exited before sleap-nn started; not starting it")
    os.execv(sys.executable, [sys.executable, "-P", "-m", "sleap_nn.cli", *args])


if __name__ == "__main__":
    main(sys.argv[1:])
