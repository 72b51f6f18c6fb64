"""Read a sleap-nn training config the way ``sleap-nn train`` does, on the user's machine.

``--config path.yaml``, the legacy ``--config-name N --config-dir D`` and Hydra-style
overrides (``key=value`` for a key the YAML has, ``+key=value`` to add one, ``++key=value``
either way, ``~key`` to remove one) are applied here, before packaging: the worker then
gets one plain YAML, which is all a package may carry. OmegaConf interpolations are
resolved here too, against this machine -- where the user would have run sleap-nn.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import UserError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def config_path(config: str | None, config_name: str | None, config_dir: str | None) -> Path:
    """The YAML that ``sleap-nn train`` would read for these flags."""
    if config and (config_name or config_dir):
        raise UserError("give either --config PATH or --config-name/--config-dir, not both")
    if config:
        path = Path(config).expanduser()
    elif config_name:
        name = config_name if config_name.endswith((".yaml", ".yml")) else f"{config_name}.yaml"
        path = Path(config_dir or ".").expanduser() / name
    else:
        raise UserError("give the training config: --config PATH (a sleap-nn config YAML), or --config-name NAME --config-dir DIR")
    if not path.is_file():
        raise UserError(f"config {path} does not exist")
    return path.resolve()


def parse_value(text: str) -> Any:
    """A Hydra override value: YAML scalars and flow lists/maps (``[a,b]``, ``null``, ``1e-3``)."""
    if text == "":
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(config: dict, overrides: Sequence[str]) -> dict:
    """Apply ``key=value`` overrides as Hydra would, with its errors in one line each."""
    for item in overrides:
        if item.startswith("~"):
            key, _, _ = item[1:].partition("=")
            _check_key(key, item)
            parent, last = _walk(config, key, item, create=False)
            if parent is None or last not in parent:
                raise UserError(f"override {item!r}: {key} is not in the config, so it cannot be removed")
            del parent[last]
            continue
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"{item!r} is not an override: write key=value (e.g. trainer_config.max_epochs=5)")
        add = key.startswith("+")
        key = key.lstrip("+")
        _check_key(key, item)
        parent, last = _walk(config, key, item, create=add)
        if parent is None or (last not in parent and not add):
            raise UserError(f"override {item!r}: {key} is not in the config; add it with +{key}={value} (as with sleap-nn train)")
        parent[last] = parse_value(value)
    return config


def _check_key(key: str, item: str) -> None:
    if not _KEY.fullmatch(key):
        raise UserError(f"override {item!r}: {key!r} is not a config key (dotted names like trainer_config.max_epochs)")


def _walk(config: dict, key: str, item: str, *, create: bool) -> tuple[dict | None, str]:
    parts = key.split(".")
    node: Any = config
    for part in parts[:-1]:
        if not isinstance(node, dict):
            raise UserError(f"override {item!r}: {part} is inside a value that is not a mapping")
        if node.get(part) is None:
            if not create:
                return None, parts[-1]
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict):
        raise UserError(f"override {item!r}: the parent of {parts[-1]} is not a mapping")
    return node, parts[-1]


def load_config(path: Path, overrides: Sequence[str] = ()) -> dict:
    """The config at ``path`` with ``overrides`` applied and interpolations resolved."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot read config {path}: {first}") from None
    if not isinstance(config, dict):
        raise UserError(f"config {path} is not a sleap-nn training config (a YAML mapping)")
    config = apply_overrides(config, overrides)
    if "${" in yaml.safe_dump(config):
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            config = OmegaConf.to_container(OmegaConf.create(config), resolve=True)  # type: ignore[assignment]
        except OmegaConfBaseException as exc:
            raise UserError(f"config {path}: {str(exc).splitlines()[0]}") from None
    return config


def labels_paths(config: dict, key: str, config_file: Path) -> list[Path]:
    """``data_config.<key>`` as local files: relative to the working dir, as sleap-nn reads them,
    else to the config's folder (where a copied config usually sits beside its labels)."""
    value = (config.get("data_config") or {}).get(key)
    if value in (None, "", []):
        return []
    out = []
    for item in value if isinstance(value, list) else [value]:
        path = Path(str(item)).expanduser()
        if not path.is_absolute() and not path.exists() and (config_file.parent / path).exists():
            path = config_file.parent / path
        if not path.is_file():
            raise UserError(f"data_config.{key}: {item} does not exist (relative paths are read from the current folder, as sleap-nn does)")
        out.append(path.resolve())
    return out
