"""Shared pieces of the attack tests: a sentinel tree that nothing may change.

Each attack test in this folder runs against a live system (real coordinator, real
worker, real aiortc link) and ends with ``sentinel.assert_unchanged()``: the files an
attacker aims at outside the worker's data dir (an ``authorized_keys``, a sibling
project, the folder above the data dir) are byte-for-byte and mode-for-mode as they
were, and no file or folder appeared there.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest


def snapshot(root: Path, *, skip: Path | None = None) -> dict[str, tuple[int, int, str]]:
    """Every path under ``root`` (except ``skip``'s subtree) -> (mode, size, sha256 or '')."""
    out: dict[str, tuple[int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        if skip is not None:
            dirnames[:] = [d for d in dirnames if (here / d) != skip]
        for name in dirnames + filenames:
            p = here / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, digest)
    return out


class Sentinel:
    """A tree that stands around the worker's data dir: ``root/worker-data`` is the
    worker's, everything else (``root/home/.ssh/authorized_keys``, ``root/other-project``,
    files directly in ``root``) must stay untouched by any attack."""

    def __init__(self, root: Path):
        self.root = root
        self.data_dir = root / "worker-data"
        (root / "home" / ".ssh").mkdir(parents=True)
        (root / "home" / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA lab-admin\n")
        (root / "other-project" / "models").mkdir(parents=True)
        (root / "other-project" / "labels.slp").write_bytes(b"not yours")
        (root / "x").write_text("sibling of the data dir\n")
        self.before = snapshot(root, skip=self.data_dir)

    def assert_unchanged(self) -> None:
        after = snapshot(self.root, skip=self.data_dir)
        added = sorted(set(after) - set(self.before))
        removed = sorted(set(self.before) - set(after))
        changed = sorted(k for k in set(after) & set(self.before) if after[k] != self.before[k])
        assert not (added or removed or changed), f"outside the data dir: added {added}, removed {removed}, changed {changed}"


@pytest.fixture
def sentinel(tmp_path) -> Sentinel:
    """A sentinel tree; give the worker ``sentinel.data_dir`` as its data dir."""
    return Sentinel(tmp_path / "sentinel")
