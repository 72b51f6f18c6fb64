"""Run ``sleap-rtc`` after loading a ``KEY=VALUE`` env file — the Windows service entry.

systemd reads ``EnvironmentFile=`` itself; WinSW cannot read one without putting the
secrets in its XML. So the Windows service runs
``python -m sleap_rtc_plugin.service.launch --env-file F -- worker --config C``, which
loads F into ``os.environ`` and then runs the worker in this same process (no extra
child to orphan when the service stops).
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from .envfile import EnvFileError, read_env


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[0] != "--env-file" or "--" not in argv:
        print("usage: python -m sleap_rtc_plugin.service.launch --env-file FILE -- <sleap-rtc args>", file=sys.stderr)
        return 2
    env_file, rest = Path(argv[1]), argv[argv.index("--") + 1 :]
    try:
        os.environ.update(read_env(env_file))
    except FileNotFoundError:
        print(f"sleap-rtc-service: env file {env_file} does not exist; create it (see docs/lab-it.md)", file=sys.stderr)
        return 2
    except EnvFileError as exc:
        print(f"sleap-rtc-service: {exc}", file=sys.stderr)
        return 2
    sys.argv = ["sleap-rtc", *rest]
    runpy.run_module("sleap_rtc_plugin", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
