"""Identifiers and names a peer, a package or the network hands us, validated once, here.

Anything that may end up in a file path, a log line or a database key -- job ids, peer
ids, room ids, file names, input names, model names, labels -- is declared on a message
as one of the ``Annotated`` types below. :func:`protocol.base.build` runs the attached
check at decode, so a value that reaches a handler has already been proven safe: an id
is one short path component of ``[A-Za-z0-9_.-]`` that no filesystem reads as a parent,
a drive or a device. Code that builds a path from such a value still goes through
:func:`child_path`, which refuses anything that would resolve outside its root (a
symlink planted inside it, say) -- two locks, because either alone has failed before.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from .base import ProtocolError

MAX_ID = 128
MAX_FILE_NAME = 255
MAX_LABEL = 128

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,%d}" % (MAX_ID - 1))
_DRIVE = re.compile(r"[A-Za-z]:")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Windows opens these as devices whatever the extension ("NUL.txt" too).
_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def _device(name: str) -> bool:
    return name.split(".", 1)[0].upper() in _DEVICES


def is_id(value: object) -> bool:
    """One path component of letters, digits, ``_ . -``; starts with a letter or digit."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None and ".." not in value and not _device(value)


def is_plain_file_name(name: object) -> bool:
    """One path component no filesystem reads as a folder, a parent, a drive or a device."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_FILE_NAME
        and name not in (".", "..")
        and not any(c in name for c in "/\\\x00:")
        and not any(ord(c) < 32 for c in name)
        and not _DRIVE.match(name)
        and not _device(name)
        and name == name.strip()
    )


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def check_id(value: object, what: str = "id") -> str:
    """``value`` if it is a safe identifier, else a ``bad_value`` :class:`ProtocolError`."""
    if not is_id(value):
        raise ProtocolError("bad_value", f"{what} {str(value)[:80]!r} must be 1..{MAX_ID} characters of letters, digits, '_', '.', '-'")
    return value  # type: ignore[return-value]


def check_file_name(value: object, what: str = "file name") -> str:
    if not is_plain_file_name(value):
        raise ProtocolError("bad_value", f"{what} {str(value)[:80]!r} must be a plain file name (no folders, '..', drive or device)")
    return value  # type: ignore[return-value]


def check_sha256(value: object, what: str = "sha256") -> str:
    if not is_sha256(value):
        raise ProtocolError("bad_value", f"{what} must be 64 lowercase hex characters")
    return value  # type: ignore[return-value]


def check_label(key: object, value: object) -> None:
    """A worker label ``key=value``: a short key, a short printable value."""
    if not (isinstance(key, str) and _LABEL_KEY.fullmatch(key)):
        raise ProtocolError("bad_value", f"label key {str(key)[:40]!r} must be 1..64 characters of letters, digits, '_', '.', '-'")
    if not (isinstance(value, str) and len(value) <= MAX_LABEL and value.isprintable()):
        raise ProtocolError("bad_value", f"label {key}'s value must be at most {MAX_LABEL} printable characters")


@dataclass(frozen=True)
class Check:
    """``Annotated`` metadata: the function :func:`protocol.base.build` runs at decode."""

    fn: object
    what: str

    def __call__(self, value: object, where: str) -> None:
        self.fn(value, where)  # type: ignore[operator]


MAX_OWNER = 256
_OWNER = re.compile(r"[A-Za-z0-9_-]{0,%d}" % MAX_OWNER)


def check_owner(value: object, what: str = "owner credential") -> str:
    """A job owner credential (``secrets.token_urlsafe``); never echoed: it is a secret."""
    if not (isinstance(value, str) and _OWNER.fullmatch(value)):
        raise ProtocolError("bad_value", f"{what} must be at most {MAX_OWNER} characters of letters, digits, '_', '-'")
    return value


JobId = Annotated[str, Check(check_id, "job id")]
PeerId = Annotated[str, Check(check_id, "peer id")]
RoomId = Annotated[str, Check(check_id, "room id")]
FileName = Annotated[str, Check(check_file_name, "file name")]
Sha256 = Annotated[str, Check(check_sha256, "sha256")]
#: A job's owner credential: only its holder may attach to, cancel or acknowledge the job.
OwnerSecret = Annotated[str, Check(check_owner, "owner credential")]


def child_path(root: Path | str, *names: str) -> Path:
    """``root/names...`` for validated names, proven to stay inside ``root``.

    Each name must be a plain file name; the joined path is resolved (symlinks
    followed) and must still lie under the resolved root. Raises ``ProtocolError``
    (``bad_path``) otherwise, before anything is created.
    """
    base = Path(os.path.realpath(root))
    for name in names:
        if not is_plain_file_name(name):
            raise ProtocolError("bad_path", f"{str(name)[:80]!r} is not a plain file name")
    path = base.joinpath(*names)
    real = Path(os.path.realpath(path))
    if real != base and base not in real.parents:
        raise ProtocolError("bad_path", f"{'/'.join(names)[:120]!r} resolves outside {base}")
    return path
