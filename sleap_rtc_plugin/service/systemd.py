"""Install and drive the worker as a systemd unit (system, per-GPU template, or user).

Every file write goes through ``ServicePaths`` (so ``--root`` redirects it) and every
systemctl/journalctl call through a ``Runner`` (so tests record it). Units are rewritten
only when their content changes; secrets files are created once and never overwritten.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import platformdirs

from ..config import default
from . import units
from .envfile import EnvFileError, read_env, write_private
from .paths import APP, ServicePaths
from .system_commands import Runner
from .status import OsView, resolve_status_port

log = logging.getLogger(__name__)

Policy = Literal["managed", "keep"]
DEFAULT_STATUS_PORT: int = default("worker.status_port")


class InstallError(Exception):
    """Install refused (e.g. a unit differs and --force was not given); one line, actionable."""


@dataclass(frozen=True)
class FileSpec:
    """One file install writes. ``managed`` files are ours (compared, --force replaces);
    ``keep`` files belong to the admin after creation (secrets, config): created once."""

    path: Path
    content: str
    mode: int
    policy: Policy
    what: str


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    changed: bool = False


class SystemdManager:
    #: Set by ``os_views`` when systemd could not be asked: ``status`` prints it once.
    note: str | None = None

    def __init__(
        self,
        paths: ServicePaths,
        runner: Runner,
        *,
        python: str | None = None,
        gpus: list[str] | None = None,
        run_as: str | None = None,
        status_port: int = DEFAULT_STATUS_PORT,
        watchdog_sec: int = 120,
        timeout_stop_sec: int = 300,
    ):
        self.paths = paths
        self.runner = runner
        self.python = python or _interpreter()
        self.gpus = gpus
        self.run_as = run_as
        self.status_port = status_port
        self.watchdog_sec = watchdog_sec
        self.timeout_stop_sec = timeout_stop_sec

    # -- commands ------------------------------------------------------------------
    def systemctl(self, *args: str) -> list[str]:
        return ["systemctl", *(["--user"] if self.paths.scope == "user" else []), *args]

    def journalctl(self, *args: str) -> list[str]:
        return ["journalctl", *(["--user"] if self.paths.scope == "user" else []), *args]

    def _run(self, argv: list[str], report: Report | None = None, *, check: bool = True) -> bool:
        result = self.runner.run(argv)
        if result.returncode != 0:
            message = f"`{' '.join(argv)}` failed ({result.returncode}): {(result.stderr or result.stdout).strip()[:300]}"
            if check:
                raise InstallError(message)
            if report is not None:
                report.warnings.append(message)
            return False
        return True

    # -- what install writes ---------------------------------------------------------
    def options(self) -> units.UnitOptions:
        user_data = Path(platformdirs.user_data_dir(APP, appauthor=False)) / "worker"
        return units.UnitOptions(
            python=self.python,
            config=self.paths.config_real,
            env_file=self.paths.env_file_real,
            name=self.paths.name,
            run_as=self.run_as,
            watchdog_sec=self.watchdog_sec,
            timeout_stop_sec=self.timeout_stop_sec,
            user_data_dir=user_data,
        )

    def plan(self) -> list[FileSpec]:
        p, opts = self.paths, self.options()
        files: list[FileSpec] = []
        if self.gpus:
            if p.scope == "user":
                raise InstallError("--gpus installs a system template unit; drop --user or install one user worker")
            pattern = p.instance_env_real("%i")
            files.append(FileSpec(p.template_file, units.render_template_unit(opts, pattern), 0o644, "managed", "template unit"))
            for index, gpu in enumerate(self.gpus):
                files.append(
                    FileSpec(
                        p.instance_env(gpu),
                        units.render_instance_env(p.instance_unit(gpu), self.status_port + index),
                        0o644,
                        "keep",
                        f"GPU {gpu} settings, not secret",
                    )
                )
        else:
            text = units.render_user_unit(opts) if p.scope == "user" else units.render_system_unit(opts)
            files.append(FileSpec(p.unit_file, text, 0o644, "managed", "unit"))
        files.append(FileSpec(p.env_file, units.render_env_file(), 0o600, "keep", "secrets (env file)"))
        files.append(
            FileSpec(p.config, units.render_config(p.config_real, p.env_file_real, self.status_port), 0o644, "keep", "worker config")
        )
        return files

    def target_units(self, instance: str | None = None) -> list[str]:
        """Units the verbs act on: the given instance, every installed instance, or the unit."""
        p = self.paths
        if instance is not None:
            return [p.instance_unit(instance)]
        if self.gpus:
            return [p.instance_unit(g) for g in self.gpus]
        if p.unit_file.exists() or not p.template_file.exists():
            return [p.unit]
        return [p.instance_unit(i) for i in p.installed_instances()]

    def installed(self) -> bool:
        return self.paths.unit_file.exists() or self.paths.template_file.exists()

    # -- install / uninstall ----------------------------------------------------------
    def install(self, *, start: bool = True, force: bool = False) -> Report:
        report = Report()
        files = self.plan()
        conflicts = [
            f for f in files if f.policy == "managed" and f.path.exists() and f.path.read_text(encoding="utf-8") != f.content
        ]
        if conflicts and not force:
            names = ", ".join(str(f.path) for f in conflicts)
            raise InstallError(
                f"{names} differs from what install would write; review with `sleap-rtc-service print`, "
                "then re-run install with --force to replace it"
            )
        units_changed = False
        for f in files:
            exists = f.path.exists()
            if exists and (f.policy == "keep" or f.path.read_text(encoding="utf-8") == f.content):
                if f.mode == 0o600 and (f.path.stat().st_mode & 0o077):
                    os.chmod(f.path, 0o600)
                    report.warnings.append(f"{f.path} was readable by others; tightened to 0600")
                report.lines.append(f"unchanged  {f.path}  ({f.what})")
                continue
            _write(f)
            report.changed = True
            units_changed |= f.policy == "managed"
            report.lines.append(f"{'replaced' if exists else 'wrote'}    {f.path}  ({f.what}, {f.mode:04o})")

        if units_changed:
            self._run(self.systemctl("daemon-reload"))
        targets = self.target_units()
        self._run(self.systemctl("enable", *(["--now"] if start else []), *targets))
        report.lines.append(f"{'enabled and started' if start else 'enabled'}  {' '.join(targets)}")
        if start and not units_changed:
            report.lines.append("(units unchanged; already-running workers were not restarted — use `sleap-rtc-service restart`)")

        scope = " --user" if self.paths.scope == "user" else ""
        report.next_steps.append(f"put the room token and secret in {self.paths.env_file_real} (mode 0600)")
        report.next_steps.append(f"set signaling_ws and room_id in {self.paths.config_real}")
        report.next_steps.append(f"sleap-rtc-service{scope} {'status' if start else 'start'}")
        return report

    def uninstall(self, *, purge: bool = False) -> Report:
        report = Report()
        p = self.paths
        targets = self.target_units()
        if self.installed():
            self._run(self.systemctl("disable", "--now", *targets), report, check=False)
        removed_unit = False
        for path in (p.unit_file, p.template_file):
            if path.exists():
                path.unlink()
                removed_unit = True
                report.lines.append(f"removed    {path}")
        if removed_unit:
            self._run(self.systemctl("daemon-reload"), report, check=False)
            self._run(self.systemctl("reset-failed", *targets), report, check=False)
            report.changed = True
        else:
            report.lines.append(f"{p.unit} is not installed; nothing to remove")
        kept = [p.env_file, p.config, *(p.instance_env(i) for i in p.installed_instances())]
        if purge:
            for path in kept:
                if path.exists():
                    path.unlink()
                    report.lines.append(f"removed    {path}")
                    report.changed = True
            for folder in p.state_dirs():
                if folder.exists():
                    shutil.rmtree(folder)
                    report.lines.append(f"removed    {folder}/")
                    report.changed = True
            folder = p.at(p.config_dir_real)
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        else:
            left = [str(x) for x in kept if x.exists()]
            if left:
                report.lines.append("kept (secrets/config; --purge removes them): " + ", ".join(left))
        return report

    # -- day-to-day verbs ----------------------------------------------------------------
    def control(self, verb: Literal["start", "stop", "restart"], instance: str | None = None) -> Report:
        targets = self.target_units(instance)
        self._run(self.systemctl(verb, *targets))
        return Report(lines=[f"{verb}: {' '.join(targets)}"])

    def show(self, unit: str) -> dict[str, str]:
        """``systemctl show`` properties that ``status`` merges into its view."""
        props = "LoadState,ActiveState,SubState,ActiveEnterTimestamp,NRestarts,UnitFileState,MainPID"
        result = self.runner.run(self.systemctl("show", unit, "-p", props, "--no-pager"))
        if result.returncode != 0:
            err = (result.stderr or "").strip()
            if "booted with systemd" in err or "Failed to connect to bus" in err:
                raise SystemdUnavailable("systemd is not running on this machine (PID 1 is not systemd), so there is no service to ask; "
                                         "for a worker started by hand use `sleap-rtc-service status --no-service`")
            raise InstallError(f"systemctl show {unit} failed: {err[:200]}")
        out: dict[str, str] = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = value.strip()
        return out

    def os_views(self, instance: str | None = None) -> list[OsView]:
        views = []
        for unit in self.target_units(instance):
            installed = self.paths.template_file.exists() if "@" in unit else self.paths.unit_file.exists()
            try:
                props = self.show(unit)
            except SystemdUnavailable as exc:
                if installed:
                    raise
                self.note = str(exc)
                props = {}  # nothing installed and no systemd to ask: "not installed" (exit 4), as documented
            views.append(OsView.from_systemd(unit, props, installed))
        return views

    def status_port_for(self, view: OsView) -> int:
        """Port of the unit's worker, from the same files systemd hands it."""
        env: dict[str, str] = {}
        files = [self.paths.env_file]
        if "@" in view.unit:
            files.append(self.paths.instance_env(view.unit.split("@", 1)[1].removesuffix(".service")))
        for path in files:
            try:
                env.update(read_env(path))
            except (OSError, EnvFileError):
                pass  # 0600 secrets file unreadable for non-root: the port is rarely there anyway
        return resolve_status_port(self.paths.config, env, self.status_port)

    def logs(self, *, follow: bool = False, lines: int = 200, instance: str | None = None) -> int:
        argv = self.journalctl("--no-pager", "-n", str(lines), "-o", "short-iso")
        for unit in self.target_units(instance):
            argv += ["-u", unit]
        if follow:
            argv.append("-f")
        return self.runner.run(argv, capture=False).returncode


class SystemdUnavailable(InstallError):
    """``systemctl`` cannot reach systemd: a container, WSL without systemd, a chroot."""


def _write(f: FileSpec) -> None:
    if f.mode == 0o600:
        write_private(f.path, f.content)
        return
    f.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.path.with_name(f".{f.path.name}.tmp")
    tmp.write_text(f.content, encoding="utf-8")
    os.chmod(tmp, f.mode)
    os.replace(tmp, f.path)


def _interpreter() -> str:
    """The absolute interpreter of this environment (a venv's own python, not its target).

    ``sys.executable`` in a venv is ``.../venv/bin/python`` (often a symlink); keeping the
    venv path rather than resolving the link is what makes the venv's packages importable.
    """
    import sys

    return os.path.abspath(sys.executable)
