"""Unpack a package zip without letting it fill the worker's disk.

A zip's header says how big each entry is, and a hostile one lies: 4 MB of
deflated zeros unpacks to 4 GiB. So before a byte is written the declared sizes
must fit under the worker's cap (``worker.max_unpacked_mb``), no big entry may
claim a compression ratio only a bomb has, and the disk must have room for the
declared total plus a margin. While copying, the bytes *actually written* are
counted against the same cap and ratio, whatever the header said, and on any
refusal the partial extraction is removed.

Blocking; call through ``asyncio.to_thread``.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from .refusals import DISK_FULL, PACKAGE_TOO_LARGE, PackageError

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Caps that keep a hostile package from filling the disk.

    ``max_total_bytes`` defaults to 20 GiB: a SLEAP package is labels with embedded
    frames plus small configs (a large project is a few GB); videos travel beside
    the package as inputs and are not unpacked. ``max_ratio``: deflate tops out near
    1000:1 on zeros while labels with embedded (already compressed) frames stay
    near 1:1 and YAML near 10:1, so 200:1 on entries over ``ratio_floor`` bytes
    refuses bombs and nothing real.
    """

    max_entries: int = 10_000
    max_total_bytes: int = 20 * 1024 * MB
    max_ratio: float = 200.0
    ratio_floor: int = 64 * MB
    min_free_margin: int = 64 * MB

    def margin(self, declared: int) -> int:
        """Free space kept on top of the declared total: 5 %, at least ``min_free_margin``."""
        return max(self.min_free_margin, declared // 20)


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


def check_entry_name(name: str) -> PurePosixPath:
    """Return the entry's relative path, or raise if it could escape the job dir."""
    if not name or "\x00" in name:
        raise PackageError(f"package entry {name!r} has an empty or NUL name")
    if "\\" in name:
        raise PackageError(f"package entry {name!r} contains a backslash; only '/' separators are allowed")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise PackageError(f"package entry {name!r} is an absolute path")
    parts = PurePosixPath(name).parts
    if any(part == ".." for part in parts):
        raise PackageError(f"package entry {name!r} points outside the package ('..')")
    return PurePosixPath(*[p for p in parts if p != "."])


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _too_large(total: int, limits: Limits) -> PackageError:
    return PackageError(
        f"package unpacks to more than the worker's cap of {_mb(limits.max_total_bytes)} "
        f"(worker.max_unpacked_mb; zip bomb guard): {_mb(total)} so far -- send less, or raise the cap",
        PACKAGE_TOO_LARGE,
    )


def _bomb(name: str, size: int, compressed: int, limits: Limits) -> PackageError:
    return PackageError(
        f"package entry {name!r} inflates {_mb(compressed)} to {_mb(size)} "
        f"(over {limits.max_ratio:g}:1, a zip bomb); refused",
        PACKAGE_TOO_LARGE,
    )


def check_zip(zf: zipfile.ZipFile, limits: Limits = Limits()) -> list[zipfile.ZipInfo]:
    """Validate every entry of an open zip by its declared sizes; return the file entries."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise PackageError(f"package has {len(infos)} entries; the limit is {limits.max_entries}", PACKAGE_TOO_LARGE)
    total = 0
    files = []
    seen: set[PurePosixPath] = set()
    for info in infos:
        rel = check_entry_name(info.filename)
        if _is_symlink(info):
            raise PackageError(f"package entry {info.filename!r} is a symlink; symlinks are not allowed")
        if info.is_dir():
            continue
        if rel in seen:
            raise PackageError(f"package entry {info.filename!r} appears twice")
        seen.add(rel)
        total += info.file_size
        if total > limits.max_total_bytes:
            raise _too_large(total, limits)
        if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise _bomb(info.filename, info.file_size, info.compress_size, limits)
        files.append(info)
    return files


def free_bytes(path: Path) -> int:
    """Free space on the filesystem that holds ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_space(dest: Path, declared: int, limits: Limits = Limits()) -> None:
    """Refuse with ``disk_full`` unless the disk holds ``declared`` bytes plus the margin."""
    free = free_bytes(dest)
    need = declared + limits.margin(declared)
    if free < need:
        raise PackageError(
            f"worker disk is too full for this package: it unpacks to {_mb(declared)}, the worker keeps "
            f"{_mb(limits.margin(declared))} spare and has {_mb(free)} free; try another worker",
            DISK_FULL,
        )


def _open_private(target: Path):
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    return os.fdopen(fd, "wb")


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, written_before: int, limits: Limits) -> int:
    written = 0
    with zf.open(info) as src, _open_private(target) as out:
        while chunk := src.read(MB):
            written += len(chunk)
            if written > info.file_size:
                raise PackageError(
                    f"package entry {info.filename!r} unpacks past its declared size (zip bomb guard)", PACKAGE_TOO_LARGE
                )
            if written_before + written > limits.max_total_bytes:
                raise _too_large(written_before + written, limits)
            if written > limits.ratio_floor and written > limits.max_ratio * max(info.compress_size, 1):
                raise _bomb(info.filename, written, info.compress_size, limits)
            out.write(chunk)
    return written


def extract(zf: zipfile.ZipFile, files: Sequence[zipfile.ZipInfo], dest: Path, limits: Limits = Limits()) -> int:
    """Copy ``files`` (from :func:`check_zip`) under ``dest``, owner-only; return the bytes written.

    Any refusal or error removes ``dest`` entirely (it must have been made for this
    package), so nothing half-unpacked is left behind.
    """
    check_space(dest, sum(i.file_size for i in files), limits)
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    dest_real = dest.resolve()
    total = 0
    try:
        for info in files:
            target = dest / check_entry_name(info.filename)
            if not target.resolve().is_relative_to(dest_real):
                raise PackageError(f"package entry {info.filename!r} resolves outside the job dir")
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            total += _copy_entry(zf, info, target, total, limits)
    except OSError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise PackageError(f"worker disk filled up while unpacking the package ({_mb(total)} written); try another worker", DISK_FULL) from None
        raise PackageError(f"cannot unpack the package: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return total
