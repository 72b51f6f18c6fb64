"""Where the room secret (the peer-link PSK) comes from.

Lookup order, first hit wins:

1. an explicit value (``--room-secret``);
2. env ``SLEAP_RTC_ROOM_SECRET_<ROOM>`` (room id upper-cased, non-alphanumerics -> ``_``);
3. the file ``<user_config_dir("sleap-rtc")>/secrets/<room_id>`` (first line);
4. the credentials store ``<user_config_dir>/credentials.json`` written by
   ``sleap-rtc room create-secret --room ID --save`` (mode 0600).

The coordinator never sees the secret; share it with the lab out of band.
"""

from __future__ import annotations

import argparse
import sys
import json
import os
import re
import secrets as _random
from pathlib import Path

import platformdirs

from ..util.private_files import write_private_json

APP = "sleap-rtc"
CREDENTIALS_FILE = "credentials.json"


def config_dir(override: str | Path | None = None) -> Path:
    if override is not None:
        return Path(override)
    env = os.environ.get("SLEAP_RTC_CONFIG_DIR")
    return Path(env) if env else Path(platformdirs.user_config_dir(APP))


def env_var_name(room_id: str) -> str:
    return "SLEAP_RTC_ROOM_SECRET_" + re.sub(r"[^A-Z0-9]", "_", room_id.upper())


def _safe_room(room_id: str) -> str:
    if not room_id or "/" in room_id or "\\" in room_id or room_id in (".", "..") or "\x00" in room_id:
        raise ValueError(f"invalid room id {room_id!r}")
    return room_id


def _credentials_path(cfg: Path) -> Path:
    return cfg / CREDENTIALS_FILE


def _load_credentials(cfg: Path) -> dict:
    try:
        data = json.loads(_credentials_path(cfg).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read {_credentials_path(cfg)}: {exc}; fix or delete it") from None
    return data if isinstance(data, dict) else {}


def lookup_secret(room_id: str, explicit: str | bytes | None = None, *, config: str | Path | None = None) -> bytes | None:
    """The room secret for ``room_id`` as bytes, or ``None`` when none is configured (legacy mode)."""
    if explicit:
        return explicit if isinstance(explicit, bytes) else explicit.strip().encode()
    value = os.environ.get(env_var_name(room_id), "").strip()
    if value:
        return value.encode()
    cfg = config_dir(config)
    try:
        line = (cfg / "secrets" / _safe_room(room_id)).read_text().splitlines()[0].strip()
        if line:
            return line.encode()
    except (FileNotFoundError, IndexError):
        pass
    stored = _load_credentials(cfg).get("room_secrets", {}).get(room_id)
    return stored.encode() if isinstance(stored, str) and stored else None


def create_secret(room_id: str, save: bool = False, *, config: str | Path | None = None) -> str:
    """A new random room secret (256 bits, URL-safe); with ``save``, stored 0600 in the credentials file."""
    _safe_room(room_id)
    value = _random.token_urlsafe(32)
    if save:
        store_secret(room_id, value, config=config)
    return value


def store_secret(room_id: str, value: str, *, config: str | Path | None = None) -> Path:
    """Remember ``value`` as the secret of ``room_id`` in the 0600 credentials file (atomic replace)."""
    _safe_room(room_id)
    if not value.strip():
        raise ValueError("an empty room secret cannot be stored")
    cfg = config_dir(config)
    cfg.mkdir(parents=True, exist_ok=True)
    data = _load_credentials(cfg)
    data.setdefault("room_secrets", {})[room_id] = value.strip()
    path = _credentials_path(cfg)
    write_private_json(path, data)
    return path


def add_secret_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sleap-rtc room create-secret``."""
    parser.add_argument("--room", required=True, help="room id the secret is for")
    parser.add_argument("--save", action="store_true", help="also store it (mode 0600) in the user credentials file")
    parser.add_argument("--config-dir", default=None, help=argparse.SUPPRESS)


def run_create_secret(args: argparse.Namespace) -> int:
    value = create_secret(args.room, args.save, config=getattr(args, "config_dir", None))
    print(value)
    where = f"saved to {_credentials_path(config_dir(getattr(args, 'config_dir', None)))}" if args.save else "not saved"
    print(
        f"# room secret for {args.room} ({where}). Give it to the worker and clients out of band:\n"
        f"#   --room-secret VALUE   or   export {env_var_name(args.room)}=VALUE",
        file=sys.stderr,
    )
    return 0
