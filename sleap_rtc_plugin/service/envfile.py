"""Read and write ``KEY=VALUE`` environment files (systemd ``EnvironmentFile=`` syntax).

The same file feeds systemd on Linux and ``sleap_rtc_plugin.service.launch`` on Windows,
so secrets live in exactly one 0600 file per host and never in a unit or XML file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnvFileError(ValueError):
    pass


def parse_env(text: str, source: str = "<env>") -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines; ``#``/``;`` comments, optional single or double quotes."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.match(key):
            raise EnvFileError(f"{source}:{number}: expected KEY=VALUE, got {raw.strip()[:40]!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def read_env(path: Path) -> dict[str, str]:
    return parse_env(path.read_text(encoding="utf-8"), str(path))


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the first byte (no window where it is readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
