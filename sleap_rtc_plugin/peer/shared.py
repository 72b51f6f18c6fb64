"""The shared-storage path: when both peers mount the same storage, send a path, not bytes.

Configured as ``transfer.shared_paths = ["<client prefix>=<worker prefix>", ...]`` on
both sides. The sender maps its local file to the other side's prefix and writes a
small random *probe* file next to the mapping's root; the receiver accepts the path
only if it lies under one of *its own* configured prefixes (a peer cannot make it
read arbitrary files), the probe it reads there has the announced hash (it really
is the same storage, not a same-named local folder), and the file it copies has the
SHA-256 from the offer. Any failure falls back to sending bytes.

Copies, never hard links: the cache entry is made read-only, and a hard link
would change the mode of the user's own file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from pathlib import Path, PurePosixPath

from typing import Any, Callable

from . import bulk_io
from .fastpath import FastPaths

PROBE_PREFIX = ".sleap-rtc-probe-"
PROBE_MAX = 4096
PROGRESS_EVERY = 64 * 1024 * 1024


class SharedPathError(Exception):
    """The shared path cannot be used for this file; the reason is one line."""


def _prefixes(options: FastPaths, role: str) -> list[tuple[str, str]]:
    """``(local, remote)`` prefix pairs for a peer of ``role``."""
    return [(c, w) if role == "client" else (w, c) for c, w in options.shared_paths]


def map_path(options: FastPaths, role: str, path: Path) -> tuple[str, str, str] | None:
    """``(local_root, remote_root, remote_path)`` for ``path`` under a configured prefix, else None."""
    resolved = Path(os.path.realpath(path))
    for local, remote in _prefixes(options, role):
        root = Path(os.path.realpath(local))
        if root == resolved or root in resolved.parents:
            rel = resolved.relative_to(root).as_posix()
            return str(root), remote, str(PurePosixPath(remote) / rel)
    return None


def write_probe(local_root: str) -> tuple[Path, str, str]:
    """Blocking. A fresh probe file under ``local_root``; returns (path, name, sha256)."""
    name = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    data = secrets.token_bytes(64)
    path = Path(local_root) / name
    with open(path, "xb") as fh:
        fh.write(data)
    return path, name, hashlib.sha256(data).hexdigest()


def allowed(options: FastPaths, role: str, path: str) -> Path:
    """The real path of ``path`` if it lies under one of this side's prefixes; else :class:`SharedPathError`."""
    real = Path(os.path.realpath(path))
    for local, _ in _prefixes(options, role):
        root = Path(os.path.realpath(local))
        if root in real.parents:
            return real
    raise SharedPathError(f"{path!r} is not under a shared path configured on this side")


def check_probe(path: Path, sha256: str) -> None:
    """Blocking."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(PROBE_MAX + 1)
    except OSError as exc:
        raise SharedPathError(f"probe {path} not readable here ({exc.strerror or exc}): not the same storage") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SharedPathError(f"probe {path} differs here: the mapping does not point at the same storage")


def copy_verified(src: Path, dest: Path, sha256: str, size: int, on_progress: Callable[[int], Any] | None = None) -> None:
    """Blocking. Copy ``src`` to ``dest``, hashing exactly the bytes written; remove ``dest`` and raise unless it matches.

    Read, write and hash run as a :func:`.bulk_io.pipeline` (three threads), so a
    large file costs about one pass of its slowest stage rather than all three.
    ``on_progress(bytes_written)`` runs on the writer thread every ``PROGRESS_EVERY`` bytes.
    """
    h = hashlib.sha256()
    differs = SharedPathError(f"{src} here is not the offered file (size or sha256 differs)")
    try:
        with open(src, "rb", buffering=0) as fin, open(dest, "wb", buffering=0) as fout:

            def fill(view: memoryview) -> None:
                got = 0
                while got < len(view):
                    n = fin.readinto(view[got:])
                    if not n:
                        raise differs
                    got += n

            written = 0

            def write(view: memoryview) -> None:
                nonlocal written
                n = len(view)
                while view:
                    view = view[fout.write(view) :]
                if on_progress is not None and (written + n) // PROGRESS_EVERY > written // PROGRESS_EVERY:
                    on_progress(written + n)
                written += n

            bulk_io.pipeline(fill, size, write, h.update)
            if fin.read(1):
                raise differs
            os.fsync(fout.fileno())
    except FileNotFoundError:
        dest.unlink(missing_ok=True)
        raise SharedPathError(f"{src} does not exist here") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if h.hexdigest() != sha256:
        dest.unlink(missing_ok=True)
        raise differs
