"""The one seam through which every OS service command runs.

systemctl, journalctl, loginctl, sc.exe and the WinSW wrapper are all invoked through
a ``Runner``, so tests record the exact argv without systemd as PID 1 or Windows, and
``--root`` installs print the commands instead of touching the machine.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

log = logging.getLogger(__name__)


class Runner(Protocol):
    def run(self, argv: Sequence[str], *, capture: bool = True) -> subprocess.CompletedProcess[str]: ...


class SystemRunner:
    """Runs commands for real. ``capture=False`` streams to the terminal (``logs -f``)."""

    def run(self, argv: Sequence[str], *, capture: bool = True) -> subprocess.CompletedProcess[str]:
        log.debug("run: %s", shlex.join(argv))
        try:
            if capture:
                return subprocess.run(list(argv), capture_output=True, text=True, check=False)
            return subprocess.run(list(argv), text=True, check=False)
        except FileNotFoundError:
            return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: command not found\n")


Responder = Callable[[list[str]], "subprocess.CompletedProcess[str] | None"]


@dataclass
class RecordingRunner:
    """Records argv lists and answers them from ``responder`` (default: success, no output).

    Used by ``--root`` installs (dry run: nothing outside the root is touched, commands
    are printed) and by tests standing in for systemd/Windows at the OS boundary.
    """

    responder: Responder | None = None
    echo: bool = False
    calls: list[list[str]] = field(default_factory=list)

    def run(self, argv: Sequence[str], *, capture: bool = True) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        if self.echo:
            print(f"(not run, --root) {shlex.join(argv)}", file=sys.stderr)
        answer = self.responder(argv) if self.responder else None
        return answer if answer is not None else subprocess.CompletedProcess(argv, 0, "", "")
