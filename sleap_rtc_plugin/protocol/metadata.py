"""What a peer may say about itself: the metadata dict of ``register`` / ``update_peer``.

The coordinator sorts, filters and serializes this dict for every discover and every
queue dispatch, so one poisoned value (``Infinity`` -- Python's json accepts it -- a
1e308 "free MB", a million-entry list, a 500-deep nest) would otherwise break those for
the whole room. :func:`check_metadata` runs at decode and refuses such a dict with one
``bad_value`` line, so the sender is told and the room never holds it.

The shape follows what a worker sends (``worker.gpu.capabilities`` plus ``name``,
``labels``, ``version``); unknown keys are allowed, within the same generic bounds.
"""

from __future__ import annotations

import math
from typing import Any

from .base import ProtocolError
from .names import check_label

#: Containers nested inside the metadata dict itself (``gpus`` -> ``[i]`` -> ``{}``).
MAX_DEPTH = 4
#: Entries in any one list or object (a 64-GPU node is already far beyond real ones).
MAX_ITEMS = 64
MAX_KEY = 64
MAX_STRING = 1024
#: Largest magnitude of any number; finite and well inside float and int range.
MAX_NUMBER = 1e15
#: Per-GPU memory (MB) anyone could mean: 16 TiB.
MAX_GPU_MEMORY_MB = 16 * 1024 * 1024
_GPU_MEMORY_KEYS = ("memory_free_mb", "memory_total_mb")


def _bad(where: str, what: str) -> ProtocolError:
    return ProtocolError("bad_value", f"{where} {what}"[:300])


def _number(value: Any, where: str, low: float = -MAX_NUMBER, high: float = MAX_NUMBER) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(where, f"must be a finite number, not {value!r}")
    if not (low <= value <= high):
        raise _bad(where, f"must be between {low:g} and {high:g}, not {str(value)[:24]}")


def _walk(value: Any, where: str, depth: int) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        _number(value, where)
    elif isinstance(value, str):
        if len(value) > MAX_STRING:
            raise _bad(where, f"is longer than {MAX_STRING} characters")
    elif isinstance(value, (list, dict)):
        if depth >= MAX_DEPTH:
            raise _bad(where, f"nests deeper than {MAX_DEPTH} levels")
        if len(value) > MAX_ITEMS:
            raise _bad(where, f"has {len(value)} entries; at most {MAX_ITEMS} are allowed")
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(item, f"{where}[{i}]", depth + 1)
        else:
            for key, item in value.items():
                if not isinstance(key, str) or not (0 < len(key) <= MAX_KEY):
                    raise _bad(where, f"has a key that is not 1..{MAX_KEY} characters")
                _walk(item, f"{where}.{key}", depth + 1)
    else:
        raise _bad(where, f"has a value of type {type(value).__name__}")


def check_metadata(value: object, where: str = "metadata") -> dict[str, Any]:
    """``value`` if it is a metadata dict the coordinator can keep, else ``bad_value``."""
    if not isinstance(value, dict):
        raise _bad(where, "must be an object")
    _walk(value, where, 0)
    gpus = value.get("gpus")
    if gpus is not None:
        if not isinstance(gpus, list):
            raise _bad(f"{where}.gpus", "must be a list of objects")
        for i, gpu in enumerate(gpus):
            if not isinstance(gpu, dict):
                raise _bad(f"{where}.gpus[{i}]", "must be an object")
            for key in _GPU_MEMORY_KEYS:
                if key in gpu:
                    mb = gpu[key]
                    if isinstance(mb, bool) or not isinstance(mb, (int, float)):
                        raise _bad(f"{where}.gpus[{i}].{key}", "must be a number of MB")
                    _number(mb, f"{where}.gpus[{i}].{key}", 0, MAX_GPU_MEMORY_MB)
    labels = value.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            raise _bad(f"{where}.labels", "must be an object of key=value strings")
        for key, label in labels.items():
            try:
                check_label(key, label)
            except ProtocolError as exc:
                raise _bad(f"{where}.labels:", exc.message) from None
    return value  # type: ignore[return-value]
