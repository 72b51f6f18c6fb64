"""Make a returned model's configs speak of the client's disk, not the worker's.

sleap-nn writes absolute worker paths into ``training_config.yaml`` (``ckpt_dir``,
``train_labels_path`` …). SLEAP's Run Training pre-fills "Runs Folder" from a
trained model's ``ckpt_dir``, so a path left pointing into the worker's job folder
sends the next *local* training there. Every absolute path outside the project is
therefore rewritten to where the thing lives here -- the project's ``models/``, the
project's labels file -- or dropped when there is no local counterpart.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

log = logging.getLogger(__name__)

#: The configs a sleap-nn run dir carries; each is rewritten when present.
CONFIG_NAMES = ("training_config.yaml", "initial_config.yaml")
_LABEL_KEYS = ("train_labels_path", "val_labels_path", "test_file_path")
_WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]|^\\\\")


def _is_abs(value: str) -> bool:
    return value.startswith("/") or bool(_WINDOWS_ABS.match(value))


def _parts(value: str) -> tuple[str, ...]:
    return (PureWindowsPath(value) if _WINDOWS_ABS.match(value) else PurePosixPath(value)).parts


def _inside(value: str, root: Path) -> bool:
    try:
        Path(value).resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def labels_for(project_dir: Path, foreign: str | None) -> Path | None:
    """The project's labels file for a worker-side ``<stem>.pkg.slp`` (else the project's only ``.slp``)."""
    if foreign:
        name = _parts(foreign)[-1]
        stem = name.removesuffix(".slp").removesuffix(".pkg")
        candidate = project_dir / f"{stem}.slp"
        if candidate.is_file():
            return candidate
    found = [p for p in project_dir.glob("*.slp") if not p.name.endswith(".pkg.slp")]
    return found[0] if len(found) == 1 else None


class _Rewriter:
    def __init__(self, run_dir: Path, project_dir: Path, labels: Path | None):
        self.run_dir = run_dir
        self.models_dir = run_dir.parent
        self.project_dir = project_dir
        self.labels = labels
        self.changed: list[str] = []

    def value(self, key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.value(f"{key}.{k}" if key else str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [v for v in (self.value(key, v) for v in value) if v is not None] if key.endswith(_LABEL_KEYS) else [self.value(key, v) for v in value]
        if not isinstance(value, str) or not _is_abs(value) or _inside(value, self.project_dir):
            return value
        new = self.replacement(key, value)
        self.changed.append(key)
        return new

    def replacement(self, key: str, value: str) -> str | None:
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "ckpt_dir":
            return self.models_dir.as_posix()
        if leaf in _LABEL_KEYS:
            return self.labels.as_posix() if self.labels is not None and leaf == "train_labels_path" else None
        parts = _parts(value)
        if "models" in parts[:-1]:  # a file inside the worker's run dir: the same file here
            tail = parts[parts.index("models") + 2:]
            if tail and (self.run_dir.joinpath(*tail)).exists():
                return self.run_dir.joinpath(*tail).as_posix()
        return None


def localize_config(path: Path, run_dir: Path, project_dir: Path, labels: Path | None) -> list[str]:
    """Rewrite one config file in place; return the keys that changed."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        return []
    rewriter = _Rewriter(run_dir, project_dir, labels)
    data = rewriter.value("", data)
    trainer = data.get("trainer_config")
    if isinstance(trainer, dict) and path.name == "training_config.yaml" and trainer.get("run_name") != run_dir.name:
        trainer["run_name"] = run_dir.name  # the installed dir may carry a "-1" the worker never saw
        rewriter.changed.append("trainer_config.run_name")
    if rewriter.changed:
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return rewriter.changed


def localize_model(run_dir: Path, project_dir: Path) -> list[str]:
    """Rewrite every config in an installed run dir; a config that will not parse stays as received."""
    changed: list[str] = []
    foreign_labels = None
    for name in CONFIG_NAMES:
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            if foreign_labels is None:
                data = yaml.safe_load(path.read_text()) or {}
                paths = (data.get("data_config") or {}).get("train_labels_path") if isinstance(data, dict) else None
                foreign_labels = (paths[0] if isinstance(paths, list) and paths else paths) if paths else None
            changed += localize_config(path, run_dir, project_dir, labels_for(project_dir, foreign_labels if isinstance(foreign_labels, str) else None))
        except (OSError, yaml.YAMLError) as exc:
            log.warning("%s: could not rewrite the worker's paths (%s); it still names them", path, exc)
    return changed
