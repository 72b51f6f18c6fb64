"""``sleap-rtc-service``: install, drive and check the worker as an OS service.

One verb set on both platforms (systemd on Linux, WinSW on Windows). All OS commands go
through one ``Runner`` (``main(..., runner=)`` in tests); ``--root DIR`` or
``SLEAP_RTC_SERVICE_ROOT`` writes every file under DIR and only prints the OS commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..config import default
from .paths import DEFAULT_NAME, ServicePaths, root_from_env
from .system_commands import RecordingRunner, Runner, SystemRunner
from .status import (
    EXIT_ERROR,
    EXIT_NOT_INSTALLED,
    Endpoint,
    OsView,
    combined_exit_code,
    evaluate,
    fetch_worker_status,
    render_table,
    resolve_status_port,
    to_json,
)
from .systemd import InstallError, Report, SystemdManager
from .windows import WindowsPaths, WindowsServiceManager

EPILOG = """\
Typical use (Linux, as root):
  sleap-rtc-service install              write /etc/systemd/system/sleap-rtc-worker.service, enable, start
  sleap-rtc-service install --gpus 0,1   one worker per GPU (sleap-rtc-worker@0, @1)
  sleap-rtc-service status               OS state + the worker's own view; exit 0 = running and connected
  sleap-rtc-service logs -f              follow the journal
Rootless: add --user. Exit codes of status: 0 ok, 1 error, 2 degraded, 3 stopped, 4 not installed.
"""


def _common(p: argparse.ArgumentParser) -> None:
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--user", dest="scope", action="store_const", const="user", help="rootless service in your systemd user manager")
    scope.add_argument("--system", dest="scope", action="store_const", const="system", help="system-wide service (default; needs root)")
    p.add_argument("--name", default=DEFAULT_NAME, help=f"service name (default {DEFAULT_NAME})")
    p.add_argument("--config", type=Path, help="worker config file (default /etc/sleap-rtc/config.toml, or the user config dir with --user)")
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--platform", choices=["linux", "windows"], help=argparse.SUPPRESS)
    p.add_argument("--python", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sleap-rtc-service",
        description="Install and manage the SLEAP RTC worker as a system service.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sleap-rtc-plugin {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        _common(p)
        return p

    for name, help_text in (
        ("install", "write the service files, enable and start the worker"),
        ("print", "show what install would write, without installing anything"),
    ):
        p = add(name, help_text)
        p.add_argument("--gpus", help="comma-separated GPU indices: one template-unit instance per GPU (system only)")
        p.add_argument("--run-as", metavar="USER", help="system service account (default: a transient DynamicUser)")
        p.add_argument("--status-port", type=int, default=default("worker.status_port"), help="status endpoint port (first GPU; +1 per further GPU)")
        p.add_argument("--watchdog-sec", type=int, default=120, help="restart a worker cut off from the coordinator this long")
        p.add_argument("--timeout-stop-sec", type=int, default=300, help="time a running job gets to stop cleanly")
        p.add_argument("--winsw", type=Path, help="Windows: path to WinSW-x64.exe (or set SLEAP_RTC_WINSW)")
        if name == "install":
            p.add_argument("--no-start", action="store_true", help="enable but do not start now")
            p.add_argument("--force", action="store_true", help="replace unit files that differ from what would be written")
    add("uninstall", "stop, disable and remove the service").add_argument(
        "--purge", action="store_true", help="also remove secrets, config, state, cache and logs"
    )
    for verb in ("start", "stop", "restart"):
        add(verb, f"{verb} the worker service").add_argument("--instance", help="one GPU instance of a template install")
    p = add("status", "show the service state and the worker's live status")
    p.add_argument("--json", action="store_true", help="stable JSON for scripts (schema in docs/lab-it.md)")
    p.add_argument("--instance", help="one GPU instance of a template install")
    p.add_argument("--port", type=int, help="status endpoint port (default: from the service's env/config files)")
    p.add_argument("--no-service", action="store_true", help="skip the OS view: check a worker started by hand")
    p = add("logs", "show the worker's log (journalctl on Linux)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", type=int, default=200, help="lines of history (default 200)")
    p.add_argument("--instance", help="one GPU instance of a template install")
    p = sub.add_parser("render-examples")  # for the repo's service/ folder; no help= keeps it out of --help
    p.add_argument("dest", type=Path)
    return parser


def _platform(args: argparse.Namespace) -> str:
    return args.platform or ("windows" if sys.platform == "win32" else "linux")


def _gpus(args: argparse.Namespace) -> list[str] | None:
    raw = getattr(args, "gpus", None)
    if not raw:
        return None
    gpus = [g.strip() for g in raw.split(",") if g.strip()]
    if not gpus or not all(g.isdigit() for g in gpus) or len(set(gpus)) != len(gpus):
        raise InstallError(f"--gpus {raw!r}: give distinct GPU indices like 0,1,2")
    return gpus


def _scope(args: argparse.Namespace, root: Path | None) -> str:
    """Explicit flag wins; install defaults to system; other verbs find where it is installed."""
    if args.scope:
        return args.scope
    if args.verb in ("install", "print"):
        return "system"
    for scope in ("system", "user"):
        p = ServicePaths.for_scope(scope, args.name, root=root)  # type: ignore[arg-type]
        if p.unit_file.exists() or p.template_file.exists():
            return scope
    return "system"


def make_manager(args: argparse.Namespace, runner: Runner, root: Path | None) -> SystemdManager | WindowsServiceManager:
    python = args.python or os.path.abspath(sys.executable)
    port = getattr(args, "status_port", default("worker.status_port"))
    if _platform(args) == "windows":
        wpaths = WindowsPaths.default(args.name, root)
        return WindowsServiceManager(wpaths, runner, python=python, winsw=getattr(args, "winsw", None), config=args.config, status_port=port)
    paths = ServicePaths.for_scope(_scope(args, root), args.name, root=root, config=args.config)  # type: ignore[arg-type]
    manager = SystemdManager(
        paths,
        runner,
        python=python,
        gpus=_gpus(args),
        run_as=getattr(args, "run_as", None),
        status_port=port,
        watchdog_sec=getattr(args, "watchdog_sec", 120),
        timeout_stop_sec=getattr(args, "timeout_stop_sec", 300),
    )
    if manager.gpus is None and args.verb not in ("install", "print") and not paths.unit_file.exists() and paths.template_file.exists():
        manager.gpus = paths.installed_instances() or None
    return manager


def _print_report(report: Report) -> None:
    for line in report.lines:
        print(line)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.next_steps:
        print("next:")
        for step in report.next_steps:
            print(f"  {step}")


def _preflight(args: argparse.Namespace, manager: SystemdManager | WindowsServiceManager, root: Path | None, runner: Runner) -> list[str]:
    from .checks import gpu_warning, linger_warning

    warnings = [w for w in [gpu_warning()] if w]
    if isinstance(manager, SystemdManager):
        if manager.paths.scope == "system" and root is None and hasattr(os, "geteuid") and os.geteuid() != 0:
            raise InstallError("a system install writes /etc/systemd/system: run it with sudo, or add --user for a rootless worker")
        if manager.paths.scope == "user":
            warnings += [w for w in [linger_warning(runner)] if w]
    return warnings


def _status(args: argparse.Namespace, manager: SystemdManager | WindowsServiceManager) -> int:
    if args.no_service:
        views: list[OsView | None] = [None]
    else:
        views = list(manager.os_views(args.instance))
    statuses = []
    for view in views:
        if view is not None and not view.installed and args.port is None:
            statuses.append(evaluate(view, Endpoint("-", False, "not installed"), None))
            continue
        if args.port is not None:
            port = args.port
        elif view is None:  # a worker run by hand sees this shell's environment
            port = resolve_status_port(args.config, dict(os.environ))
        else:
            port = manager.status_port_for(view)
        endpoint, worker = fetch_worker_status(port)
        statuses.append(evaluate(view, endpoint, worker))
    scope = getattr(getattr(manager, "paths", None), "scope", "windows")
    note = getattr(manager, "note", None)
    if note:
        print(f"sleap-rtc-service: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(to_json(statuses, scope), indent=2, default=str))
    else:
        print(render_table(statuses))
    return combined_exit_code(statuses) if statuses else EXIT_NOT_INSTALLED


def _print(manager: SystemdManager | WindowsServiceManager) -> int:
    if isinstance(manager, WindowsServiceManager):
        print(f"# {manager.paths.xml}\n{manager.xml()}")
        return 0
    for f in manager.plan():
        state = "exists, kept as is" if f.policy == "keep" and f.path.exists() else f"mode {f.mode:04o}"
        print(f"# ---- {f.path}  ({f.what}; {state})")
        print(f.content)
    return 0


def render_examples(dest: Path) -> list[Path]:
    """Render the files shipped in the repository's ``service/`` folder (kept in sync by a test)."""
    from . import units

    python = "/opt/sleap-rtc/venv/bin/python"
    system = units.UnitOptions(python=python, config=Path("/etc/sleap-rtc/config.toml"), env_file=Path("/etc/sleap-rtc/worker.env"))
    user = units.UnitOptions(
        python="/home/USER/.venvs/sleap-rtc/bin/python",
        config=Path("/home/USER/.config/sleap-rtc/config.toml"),
        env_file=Path("/home/USER/.config/sleap-rtc/worker.env"),
        user_data_dir=Path("/home/USER/.local/share/sleap-rtc/worker"),
    )
    files = {
        "systemd/sleap-rtc-worker.service": units.render_system_unit(system),
        "systemd/sleap-rtc-worker@.service": units.render_template_unit(system, Path("/etc/sleap-rtc/worker-%i.env")),
        "systemd/user/sleap-rtc-worker.service": units.render_user_unit(user),
        "env/worker.env": units.render_env_file(),
        "env/worker-0.env": units.render_instance_env("sleap-rtc-worker@0.service", default("worker.status_port")),
        "env/config.toml": units.render_config(Path("/etc/sleap-rtc/config.toml"), Path("/etc/sleap-rtc/worker.env")),
        "windows/sleap-rtc-worker.xml": units.render_winsw_xml(
            service_id=DEFAULT_NAME,
            python=r"C:\sleap-rtc\venv\Scripts\python.exe",
            config=r"C:\ProgramData\sleap-rtc\config.toml",
            env_file=r"C:\ProgramData\sleap-rtc\worker.env",
            workdir=r"C:\ProgramData\sleap-rtc",
            logdir=r"C:\ProgramData\sleap-rtc\logs",
        ),
    }
    written = []
    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None, *, runner: Runner | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "render-examples":
        for path in render_examples(args.dest):
            print(path)
        return 0
    root = args.root.resolve() if args.root else root_from_env(None)
    if runner is None:
        runner = RecordingRunner(echo=True) if root is not None else SystemRunner()
    try:
        manager = make_manager(args, runner, root)
        if args.verb == "print":
            return _print(manager)
        if args.verb == "install":
            warnings = _preflight(args, manager, root, runner)
            report = manager.install(start=not args.no_start, force=args.force)
            report.warnings[:0] = warnings
            _print_report(report)
            return 0
        if args.verb == "uninstall":
            _print_report(manager.uninstall(purge=args.purge))
            return 0
        if args.verb in ("start", "stop", "restart"):
            _print_report(manager.control(args.verb, args.instance))
            return 0
        if args.verb == "status":
            return _status(args, manager)
        if args.verb == "logs":
            return manager.logs(follow=args.follow, lines=args.lines, instance=args.instance)
    except (InstallError, ValueError) as exc:
        print(f"sleap-rtc-service: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except PermissionError as exc:
        print(f"sleap-rtc-service: permission denied: {exc.filename} (run with sudo, or use --user)", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
