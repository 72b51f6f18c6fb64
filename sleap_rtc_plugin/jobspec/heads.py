"""Which model head a sleap-nn training config trains, and the order heads train in."""

from __future__ import annotations

from typing import Any

from .refusals import PackageError

#: Training order of heads: a top-down pipeline trains its centroid model first.
HEAD_ORDER = {
    "centroid": 0,
    "single_instance": 1,
    "bottomup": 1,
    "multi_class_bottomup": 1,
    "centered_instance": 2,
    "multi_class_topdown": 2,
}


def head_of(config: Any, name: str) -> str:
    """The single head type a sleap-nn config trains, e.g. ``centroid``."""
    heads = None
    if isinstance(config, dict):
        heads = (config.get("model_config") or {}).get("head_configs")
    if not isinstance(heads, dict):
        raise PackageError(f"config {name} has no model_config.head_configs; is it a sleap-nn training config?")
    active = [k for k, v in heads.items() if v is not None]
    if len(active) != 1:
        raise PackageError(f"config {name} must set exactly one head in model_config.head_configs, found {active or 'none'}")
    if active[0] not in HEAD_ORDER:
        raise PackageError(f"config {name}: unknown head type {str(active[0])[:40]!r}; expected one of {', '.join(sorted(HEAD_ORDER))}")
    return active[0]
