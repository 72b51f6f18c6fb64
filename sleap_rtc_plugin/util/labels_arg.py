"""``--label key=value`` flags, parsed the same way by the worker and the client CLIs."""

from __future__ import annotations

from ..errors import UserError


def parse_labels(items: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--label {item!r} must look like key=value (e.g. --label gpu=a100)")
        labels[key.strip()] = value.strip()
    return labels
