"""Owner-only files written atomically: credentials, secrets, job owner keys.

One writer so every secret on disk gets the same treatment: created 0600 (never
briefly world-readable), written to a temporary name beside the target and renamed
over it, so a crash leaves the old file or the new, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_private(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Atomically replace ``path`` with ``data`` (mode 0600); ``durable`` fsyncs before the rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)  # an existing tmp keeps its old mode through O_CREAT
    os.replace(tmp, path)


def write_private_json(path: Path, data: Any) -> None:
    """:func:`write_private` for a JSON document."""
    write_private(path, json.dumps(data, indent=2).encode("utf-8"))
