"""Keep a project's hidden ``.sleap-rtc/`` folder small.

Received results pass through ``.sleap-rtc/incoming/<job>/`` and the receiver's
content-addressed ``.sleap-rtc/cache/`` on their way into ``models/`` and
``predictions/``. Once installed, those copies are dead weight (one user's folder
reached 46 MB after a few jobs): they go at once, and what may legitimately stay (the
cache of files still wanted, a partial download to resume) is capped by
``client.project_cache_mb``. The job list, owner credentials and queued packages are
not touched: they are small and a later fetch needs them.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Iterable

from ..peer.cache import ContentCache

log = logging.getLogger(__name__)

STATE_DIR = ".sleap-rtc"
DEFAULT_CAP_MB = 256


def state_dir(project_dir: Path) -> Path:
    return Path(project_dir) / STATE_DIR


def cap_bytes(settings: object | None = None) -> int:
    get = getattr(settings, "get", None)
    mb = get("client.project_cache_mb", DEFAULT_CAP_MB) if callable(get) else DEFAULT_CAP_MB
    return max(0, int(mb)) * 2**20


def tidy(project_dir: Path, job_id: str, installed_sha256: Iterable[str]) -> int:
    """:func:`tidy_after_install` with the configured cap; never raises (tidying must not fail a fetch)."""
    from ..config import load_settings

    try:
        return tidy_after_install(project_dir, job_id, installed_sha256, cap_bytes(load_settings()))
    except Exception as exc:  # noqa: BLE001 - a config or disk hiccup here loses nothing
        log.warning("could not tidy %s after job %s: %s", state_dir(project_dir), job_id, exc)
        return 0


def tidy_after_install(project_dir: Path, job_id: str, installed_sha256: Iterable[str], max_bytes: int) -> int:
    """Drop the installed results' cached copies and the job's incoming folder, then cap the
    cache; return the bytes freed. Blocking: call through ``asyncio.to_thread``."""
    root = state_dir(project_dir)
    freed = 0
    cache = root / "cache"
    for sha in set(installed_sha256):
        entry = ContentCache(cache, None).path_of(sha) if cache.is_dir() else None
        if entry is not None:
            try:
                size = entry.stat().st_size
                entry.unlink()
                freed += size
            except OSError as exc:
                log.warning("could not remove the cached copy %s: %s", entry, exc)
    incoming = root / "incoming" / job_id
    if incoming.is_dir():
        freed += sum(p.stat().st_size for p in incoming.rglob("*") if p.is_file())
        shutil.rmtree(incoming, ignore_errors=True)
    if cache.is_dir():
        evicting = ContentCache(cache, max_bytes)
        before = evicting.total_bytes()
        evicting.evict()
        freed += before - evicting.total_bytes()
    if freed:
        log.info("job %s: freed %.1f MB in %s", job_id, freed / 2**20, root)
    return freed
