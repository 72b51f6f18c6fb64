"""Remembered connection settings and the thin line to the credential store.

Non-secret fields (coordinator URL, room id, "remember" flag) live in QSettings.
Tokens and room secrets never do: they go through :mod:`sleap_rtc_plugin.peer.secrets`
(the OS keyring or an owner-only file), reached only via the two functions below so
the GUI has exactly one seam to that module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_SERVER_URL = "ws://127.0.0.1:8765"
_ORG, _APP = "sleap-rtc", "gui"


@dataclass
class SavedConnection:
    server_url: str = ""
    room_id: str = ""
    remember: bool = False


def config_defaults() -> dict:
    """``signaling_ws``, ``room_id`` and ``token`` from the project config (CLI > env > TOML)."""
    try:
        from sleap_rtc_plugin.config import load_settings

        cfg = load_settings()
        return {k: cfg.get(k) for k in ("signaling_ws", "room_id", "token")}
    except Exception as exc:  # an unreadable config must not stop the GUI
        logger.warning("could not read sleap-rtc config: %s", exc)
        return {}


def default_server_url() -> str:
    """Coordinator URL from the project config (``signaling_ws``), else loopback."""
    return config_defaults().get("signaling_ws") or DEFAULT_SERVER_URL


def _qsettings():
    from qtpy.QtCore import QSettings

    return QSettings(_ORG, _APP)


def load_saved() -> SavedConnection:
    s = _qsettings()
    return SavedConnection(
        server_url=str(s.value("server_url", "") or ""),
        room_id=str(s.value("room_id", "") or ""),
        remember=str(s.value("remember", "false")).lower() == "true",
    )


def save_connection(saved: SavedConnection) -> None:
    s = _qsettings()
    s.setValue("server_url", saved.server_url if saved.remember else "")
    s.setValue("room_id", saved.room_id if saved.remember else "")
    s.setValue("remember", "true" if saved.remember else "false")
    s.sync()


def remember_secret(room_id: str, value: str) -> bool:
    """Store a room secret in the 0600 credential store; False (and a log line) when it cannot.

    Room tokens are never remembered by the GUI: the worker prints a fresh session
    string instead.
    """
    from sleap_rtc_plugin.peer import secrets

    try:
        secrets.store_secret(room_id, value)
        return True
    except (OSError, ValueError, RuntimeError) as exc:
        logger.warning("could not store the room secret for room %s: %s", room_id, exc)
        return False


def recall_secret(room_id: str) -> str | None:
    """The room secret the credential store (env var, secrets file) holds for ``room_id``."""
    try:
        from sleap_rtc_plugin.peer import secrets

        value = secrets.lookup_secret(room_id)
        return value.decode() if isinstance(value, bytes) else value
    except Exception as exc:
        logger.debug("no stored room secret for room %s: %s", room_id, exc)
        return None
