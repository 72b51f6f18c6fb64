"""Which file names a peer may hand the receiver, and where they land.

:func:`sanitize_name` is pure (the transfer core calls it on every offer);
:func:`resolve_inside` also follows symlinks already on the receiver's disk.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import TransferError

_DRIVE = re.compile(r"^[A-Za-z]:")


def sanitize_name(name: str) -> str:
    """A safe relative POSIX path for ``name``, or :class:`TransferError` ``bad_name``.

    Refused: empty names, NUL and control characters, backslashes, absolute paths,
    drive letters, empty/``.``/``..`` components (zip-slip), and the receiver's own
    reserved ``.sleap-rtc*`` folders.
    """

    def bad(why: str) -> TransferError:
        return TransferError("bad_name", f"refused file name {name[:80]!r}: {why}")

    if not name:
        raise bad("empty name")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise bad("contains NUL or control characters")
    if "\\" in name:
        raise bad("backslashes are not allowed; use '/' between folders")
    if _DRIVE.match(name):
        raise bad("drive letters are not allowed; send a relative path")
    if name.startswith("/"):
        raise bad("absolute paths are not allowed; send a relative path")
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise bad("'.', '..' and empty path components are not allowed")
        if len(part.encode()) > 255:
            raise bad("a path component is longer than 255 bytes")
    if parts[0].lower().startswith(".sleap-rtc"):
        raise bad("names under .sleap-rtc* are reserved")
    return "/".join(parts)


def resolve_inside(root: Path, name: str) -> Path:
    """``root / sanitize_name(name)``, refusing anything that resolves outside ``root`` (symlinks)."""
    rel = sanitize_name(name)
    root = root.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise TransferError("bad_name", f"refused file name {name[:80]!r}: it resolves outside the destination folder")
    return target
