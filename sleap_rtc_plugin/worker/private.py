"""Owner-only folders and files for everything the worker keeps on disk.

Packages, models and predictions are lab data, and the embedded coordinator's
database holds token hashes. The shipped systemd units set ``UMask=0077``, but a
worker started by hand (umask 022 on most systems) would make them readable by
every local user, so the worker sets the modes itself: 0700 folders, 0600 files,
whatever the umask. A folder that already exists is tightened too.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | Path, *subdirs: str) -> Path:
    """Create ``path`` (and ``path/<sub>`` for each of ``subdirs``) as 0700 folders; return ``path``.

    Blocking (a few syscalls): fine at start-up, else call through ``asyncio.to_thread``.
    """
    path = Path(path)
    for folder in (path, *(path / s for s in subdirs)):
        folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        st = folder.stat()
        if st.st_mode & 0o777 != DIR_MODE:
            try:
                os.chmod(folder, DIR_MODE)
            except PermissionError:  # a folder lab IT made for us, owned by someone else
                log.warning("%s is mode %o and not ours to change; make it 0700 so other users cannot read job data", folder, st.st_mode & 0o777)
    return path


def private_tree(root: str | Path) -> None:
    """Make every folder under ``root`` 0700 and every file 0600 (symlinks are left alone)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, DIR_MODE)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, FILE_MODE)
