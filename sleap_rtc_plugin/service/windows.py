"""The worker as a Windows service, through a WinSW wrapper.

Why WinSW and not pywin32's ``ServiceFramework``: a pywin32 service runs inside
``pythonservice.exe``, which must find ``pythonXY.dll`` and ``pywintypesXY.dll`` from a
LocalSystem context; inside a virtualenv (or conda env) those live outside the venv and
the service fails at start with error 1053 unless DLLs are copied and
``pywin32_postinstall`` is re-run per environment. WinSW is one self-contained .exe that
runs a command line; ours is the venv's own ``python.exe -m ...`` by absolute path, which
keeps working across venvs, conda and upgrades (reinstalling the package changes nothing
the service depends on). See docs/lab-it.md.

Every OS call (the WinSW exe, ``sc.exe``, ``icacls``) goes through a ``Runner`` so the
verb → command mapping is tested on Linux; only the commands themselves need Windows.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config import default
from . import units
from .envfile import read_env, write_private
from .paths import DEFAULT_NAME, check_name
from .system_commands import Runner
from .status import OsView, resolve_status_port
from .systemd import InstallError, Report

RECOVERY = "restart/5000/restart/5000/restart/60000"
WINSW_ENV = "SLEAP_RTC_WINSW"


@dataclass(frozen=True)
class WindowsPaths:
    """Layout under ``%ProgramData%\\sleap-rtc`` (``base``): config, env, service, logs."""

    base: Path
    name: str = DEFAULT_NAME

    @classmethod
    def default(cls, name: str = DEFAULT_NAME, root: Path | None = None) -> "WindowsPaths":
        check_name(name)
        if root is not None:
            return cls(Path(root) / "ProgramData" / "sleap-rtc", name)
        return cls(Path(os.environ.get("ProgramData", r"C:\ProgramData")) / "sleap-rtc", name)

    @property
    def service_dir(self) -> Path:
        return self.base / "service"

    @property
    def exe(self) -> Path:
        return self.service_dir / f"{self.name}.exe"

    @property
    def xml(self) -> Path:
        return self.service_dir / f"{self.name}.xml"

    @property
    def env_file(self) -> Path:
        return self.base / ("worker.env" if self.name == DEFAULT_NAME else f"{self.name}.env")

    @property
    def config(self) -> Path:
        return self.base / "config.toml"

    @property
    def log_dir(self) -> Path:
        return self.base / "logs"


class WindowsServiceManager:
    def __init__(self, paths: WindowsPaths, runner: Runner, *, python: str, winsw: Path | None = None, config: Path | None = None, status_port: int = default("worker.status_port")):
        self.paths = paths
        self.runner = runner
        self.python = python
        self.winsw = winsw or (Path(os.environ[WINSW_ENV]) if os.environ.get(WINSW_ENV) else None)
        self.config = config or paths.config
        self.status_port = status_port

    def xml(self) -> str:
        return units.render_winsw_xml(
            service_id=self.paths.name,
            python=self.python,
            config=str(self.config),
            env_file=str(self.paths.env_file),
            workdir=str(self.paths.base),
            logdir=str(self.paths.log_dir),
        )

    def _run(self, argv: list[str], report: Report | None = None, *, check: bool = True, ok: tuple[int, ...] = (0,)) -> int:
        result = self.runner.run(argv)
        if result.returncode not in ok:
            message = f"`{' '.join(argv)}` failed ({result.returncode}): {(result.stderr or result.stdout).strip()[:300]}"
            if check:
                raise InstallError(message)
            if report is not None:
                report.warnings.append(message)
        return result.returncode

    def install(self, *, start: bool = True, force: bool = False) -> Report:
        report = Report()
        p, xml = self.paths, self.xml()
        if p.xml.exists() and p.xml.read_text(encoding="utf-8") != xml and not force:
            raise InstallError(f"{p.xml} differs from what install would write; re-run install with --force to replace it")
        unchanged = p.xml.exists() and p.xml.read_text(encoding="utf-8") == xml and p.exe.exists()
        if not p.exe.exists():
            if self.winsw is None or not Path(self.winsw).is_file():
                raise InstallError(
                    f"WinSW not found: download WinSW-x64.exe (v2.12+) and pass --winsw PATH or set {WINSW_ENV}"
                )
            p.service_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.winsw, p.exe)
            report.lines.append(f"wrote      {p.exe}  (WinSW wrapper)")
        if unchanged:
            report.lines.append(f"unchanged  {p.xml}")
        else:
            p.service_dir.mkdir(parents=True, exist_ok=True)
            p.xml.write_text(xml, encoding="utf-8")
            report.lines.append(f"wrote      {p.xml}")
            report.changed = True
        if not p.env_file.exists():
            write_private(p.env_file, units.render_env_file())
            report.lines.append(f"wrote      {p.env_file}  (secrets)")
        if not self.config.exists():
            self.config.parent.mkdir(parents=True, exist_ok=True)
            self.config.write_text(units.render_config(self.config, p.env_file, self.status_port), encoding="utf-8")
            report.lines.append(f"wrote      {self.config}  (worker config)")
        p.log_dir.mkdir(parents=True, exist_ok=True)
        # Only SYSTEM and Administrators may read the secrets file (0600 equivalent).
        self._run(["icacls", str(p.env_file), "/inheritance:r", "/grant:r", "*S-1-5-18:F", "*S-1-5-32-544:F"], report, check=False)
        if not self._query().installed:
            self._run([str(p.exe), "install"])
        elif report.changed:
            self._run([str(p.exe), "refresh"], report, check=False)
        self._run(["sc.exe", "failure", p.name, "reset=", "86400", "actions=", RECOVERY])
        self._run(["sc.exe", "failureflag", p.name, "1"], report, check=False)
        report.lines.append(f"registered service {p.name} (recovery: {RECOVERY})")
        if start:
            self._run(["sc.exe", "start", p.name], report, check=False, ok=(0, 1056))  # 1056: already running
        report.next_steps += [
            f"put the room token and secret in {p.env_file}",
            f"set signaling_ws and room_id in {self.config}",
            "sleap-rtc-service status" if start else "sleap-rtc-service start",
        ]
        return report

    def uninstall(self, *, purge: bool = False) -> Report:
        report = Report()
        p = self.paths
        if self._query().installed:
            self._run(["sc.exe", "stop", p.name], report, check=False, ok=(0, 1062))  # 1062: not started
            self._run([str(p.exe), "uninstall"] if p.exe.exists() else ["sc.exe", "delete", p.name])
            report.lines.append(f"unregistered service {p.name}")
            report.changed = True
        else:
            report.lines.append(f"service {p.name} is not installed")
        for path in (p.xml, p.exe):
            if path.exists():
                path.unlink()
                report.lines.append(f"removed    {path}")
        if purge:
            for path in (p.env_file, self.config):
                if path.exists():
                    path.unlink()
                    report.lines.append(f"removed    {path}")
            if p.log_dir.exists():
                shutil.rmtree(p.log_dir)
                report.lines.append(f"removed    {p.log_dir}")
        return report

    def control(self, verb: Literal["start", "stop", "restart"], instance: str | None = None) -> Report:
        name = self.paths.name
        if verb == "restart":
            self._run([str(self.paths.exe), "restart"])
        else:
            self._run(["sc.exe", verb, name], ok=(0, 1056) if verb == "start" else (0, 1062))
        return Report(lines=[f"{verb}: {name}"])

    def _query(self) -> OsView:
        result = self.runner.run(["sc.exe", "queryex", self.paths.name])
        view = OsView(unit=self.paths.name, manager="windows", installed=False)
        if result.returncode != 0:  # 1060: service does not exist
            return view
        state = re.search(r"STATE\s*:\s*\d+\s+(\w+)", result.stdout)
        pid = re.search(r"PID\s*:\s*(\d+)", result.stdout)
        word = state.group(1).upper() if state else ""
        view.installed = True
        view.active_state = {"RUNNING": "active", "START_PENDING": "activating", "STOP_PENDING": "deactivating", "STOPPED": "inactive"}.get(word, word.lower() or None)
        view.sub_state = word.lower() or None
        view.main_pid = int(pid.group(1)) if pid and pid.group(1) != "0" else None
        view.enabled = "auto" if view.installed else None
        return view

    def os_views(self, instance: str | None = None) -> list[OsView]:
        return [self._query()]

    def status_port_for(self, view: OsView) -> int:
        env = read_env(self.paths.env_file) if self.paths.env_file.exists() else {}
        return resolve_status_port(self.config, env, self.status_port)

    def logs(self, *, follow: bool = False, lines: int = 200, instance: str | None = None) -> int:
        log = self.paths.log_dir / f"{self.paths.name}.err.log"
        if not log.exists():
            raise InstallError(f"no log yet at {log}")
        with open(log, encoding="utf-8", errors="replace") as fh:
            for line in fh.readlines()[-lines:]:
                print(line, end="")
            while follow:
                line = fh.readline()
                if line:
                    print(line, end="", flush=True)
                else:
                    time.sleep(0.5)
        return 0
