"""Make a returned labels file point at the user's own videos, not the worker's copies.

sleap-nn on the worker writes predictions (and a model's ground-truth/validation
``.slp`` files) that reference the video at the worker's job path
(``…/jobs/<id>/package/inputs/clip.mp4``), which is deleted when the job ends and
means nothing on the client anyway. Before a result reaches the project, every video
in it is re-pointed, in this order, at:

1. the local file that was sent under the same name (a ``--input`` video, the data
   file of the package) -- the file the user named;
2. the video an embedded copy was made from (``source_video``), when that file is on
   this machine -- labels embedded by the client keep it;
3. the path already written, when it exists here.

A video none of these find is left as it is and logged: the file still opens, and
SLEAP asks for the video when it needs frames.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePath
from typing import Any, Mapping

log = logging.getLogger(__name__)


def _name(filename: Any) -> str:
    text = str(filename[0] if isinstance(filename, list) and filename else filename)
    return PurePath(text.replace("\\", "/")).name


def _local_video(old: Any, local: Path) -> Any:
    """A video for ``local``: a fresh media video, or the embedded one re-pointed at a local ``.slp``."""
    import sleap_io as sio

    if local.suffix == ".slp":
        old.replace_filename(local.as_posix(), open=False)
        return old
    return sio.Video.from_filename(local.as_posix())


def local_target(video: Any, local_files: Mapping[str, Path]) -> Path | None:
    """Which local file ``video`` stands for (see the module doc), or None."""
    by_name = local_files.get(_name(video.filename))
    if by_name is not None and Path(by_name).is_file():
        return Path(by_name).resolve()
    source = getattr(video, "source_video", None)
    while source is not None:
        path = Path(str(source.filename))
        if path.is_absolute() and path.is_file():
            return path
        source = getattr(source, "source_video", None)
    own = Path(str(video.filename))
    return own if own.is_absolute() and own.is_file() else None


def relink_videos(slp_path: Path, local_files: Mapping[str, Path]) -> list[Path | None]:
    """Rewrite ``slp_path`` in place so each video references a local file; returns the new paths.

    Blocking (sleap-io); call it via ``asyncio.to_thread``. The rewrite goes through a
    temporary file and a rename, so a failure leaves the received file as it was.
    """
    import sleap_io as sio

    labels = sio.load_slp(slp_path.as_posix(), open_videos=False)
    targets = [local_target(v, local_files) for v in labels.videos]
    changes = {id(v): t for v, t in zip(labels.videos, targets) if t is not None and Path(str(v.filename)) != t}
    if not changes:
        for v, t in zip(labels.videos, targets):
            if t is None:
                log.warning("%s: no local file found for video %s; it keeps that path", slp_path.name, v.filename)
        return targets
    old, new = [], []
    for v in list(labels.videos):
        if id(v) in changes:
            old.append(v)
            new.append(_local_video(v, changes[id(v)]))
    if any(o is not n for o, n in zip(old, new)):
        labels.replace_videos(old_videos=[o for o, n in zip(old, new) if o is not n], new_videos=[n for o, n in zip(old, new) if o is not n])
    tmp = slp_path.with_name(f".{slp_path.name}.relink")
    try:
        sio.save_slp(labels, tmp.as_posix(), embed=False, restore_original_videos=False, verbose=False)
        tmp.replace(slp_path)
    finally:
        tmp.unlink(missing_ok=True)
        for v in new:
            try:
                v.close()
            except Exception:  # pragma: no cover - a backend that never opened
                pass
    for v, t in zip(labels.videos, targets):
        if t is None:
            log.warning("%s: no local file found for video %s; it keeps that path", slp_path.name, v.filename)
    log.info("%s: videos now point at %s", slp_path.name, ", ".join(str(t) for t in targets if t is not None))
    return targets
