"""Where a service install puts its files, for each scope, optionally under a fake root.

``--root DIR`` (or ``SLEAP_RTC_SERVICE_ROOT``) re-roots every absolute path, so tests
and packagers install and uninstall for real without touching the machine.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

Scope = Literal["system", "user"]
DEFAULT_NAME = "sleap-rtc-worker"
APP = "sleap-rtc"
ROOT_ENV = "SLEAP_RTC_SERVICE_ROOT"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str) -> str:
    if not _NAME.match(name) or name.endswith((".service", "@")):
        raise ValueError(f"service name {name!r} must be 1-64 letters, digits, '-', '_' or '.', without .service")
    return name


def reroot(path: Path, root: Path | None) -> Path:
    """``/etc/x`` → ``ROOT/etc/x``; relative paths are made absolute first."""
    path = Path(os.path.abspath(path))
    if root is None:
        return path
    return Path(root) / path.relative_to(path.anchor)


@dataclass(frozen=True)
class ServicePaths:
    """Every file a systemd install reads or writes; the ``*_real`` forms go into units."""

    scope: Scope
    name: str
    root: Path | None
    unit_dir_real: Path
    config_dir_real: Path
    config_real: Path

    @classmethod
    def for_scope(cls, scope: Scope, name: str = DEFAULT_NAME, *, root: Path | None = None, config: Path | None = None) -> "ServicePaths":
        check_name(name)
        if scope == "system":
            unit_dir = Path("/etc/systemd/system")
            config_dir = Path("/etc") / APP
        else:
            xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
            unit_dir = Path(xdg) / "systemd" / "user"
            config_dir = Path(platformdirs.user_config_dir(APP, appauthor=False))
        config_path = Path(os.path.abspath(config)) if config else config_dir / "config.toml"
        return cls(scope, name, Path(root) if root else None, unit_dir, config_dir, config_path)

    # -- unit and file names ---------------------------------------------------
    @property
    def unit(self) -> str:
        return f"{self.name}.service"

    @property
    def template_unit(self) -> str:
        return f"{self.name}@.service"

    def instance_unit(self, instance: str) -> str:
        return f"{self.name}@{instance}.service"

    @property
    def env_file_real(self) -> Path:
        stem = "worker" if self.name == DEFAULT_NAME else self.name
        return self.config_dir_real / f"{stem}.env"

    def instance_env_real(self, instance: str) -> Path:
        stem = "worker" if self.name == DEFAULT_NAME else self.name
        return self.config_dir_real / f"{stem}-{instance}.env"

    # -- where the bytes land (re-rooted) ----------------------------------------
    def at(self, real: Path) -> Path:
        return reroot(real, self.root)

    @property
    def unit_file(self) -> Path:
        return self.at(self.unit_dir_real / self.unit)

    @property
    def template_file(self) -> Path:
        return self.at(self.unit_dir_real / self.template_unit)

    @property
    def env_file(self) -> Path:
        return self.at(self.env_file_real)

    def instance_env(self, instance: str) -> Path:
        return self.at(self.instance_env_real(instance))

    @property
    def config(self) -> Path:
        return self.at(self.config_real)

    def installed_instances(self) -> list[str]:
        """Instances that have a per-instance env file (written by ``install --gpus``)."""
        stem = "worker" if self.name == DEFAULT_NAME else self.name
        folder = self.at(self.config_dir_real)
        if not folder.is_dir():
            return []
        found = [p.name[len(stem) + 1 : -4] for p in folder.glob(f"{stem}-*.env")]
        return sorted(found, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))

    def state_dirs(self) -> list[Path]:
        """Directories ``--purge`` removes (state, cache, logs)."""
        if self.scope == "system":
            reals = [Path("/var/lib") / APP, Path("/var/lib/private") / APP, Path("/var/cache") / APP, Path("/var/log") / APP]
        else:
            reals = [Path(platformdirs.user_data_dir(APP, appauthor=False)) / "worker", Path(platformdirs.user_cache_dir(APP, appauthor=False))]
        return [self.at(p) for p in reals]


def root_from_env(value: str | None) -> Path | None:
    value = value if value is not None else os.environ.get(ROOT_ENV)
    return Path(value).resolve() if value else None
