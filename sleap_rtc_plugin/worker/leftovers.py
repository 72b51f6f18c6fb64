"""What a worker killed mid-upload (kill -9, OOM killer, power loss) left on its disk.

A link receiving a job's files places them in ``incoming/<job_id>/``, and the session
removes that folder when it ends. A worker that died never ends it: at its next start
no link is open, so every entry there is an upload nobody will finish (the job itself
was requeued, its package comes again). They are cleared with the data dir lock held,
so a second process on the same folder can never lose a live upload to this.

The partial copies in ``partial/`` are kept on purpose: the same content sent again
(the same job back on this worker, or the same package) resumes from them, and
:class:`sleap_rtc_plugin.peer.staging.FileReceiver` deletes the ones unused for
``PARTIAL_MAX_AGE``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def clear_incoming(data_dir: Path) -> list[Path]:
    """Remove every entry of ``<data_dir>/incoming``; return what went. Blocking: call
    through ``asyncio.to_thread``, at start-up only, with the data dir lock held."""
    incoming = data_dir / "incoming"
    removed: list[Path] = []
    if not incoming.is_dir():
        return removed
    for entry in incoming.iterdir():
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as exc:
            log.warning("could not remove %s, left by an earlier run: %s", entry, exc)
            continue
        removed.append(entry)
    if removed:
        log.info("removed %d unfinished upload folder(s) left in %s by an earlier run", len(removed), incoming)
    return removed
