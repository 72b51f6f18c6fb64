"""Remembered connection settings and the thin line to the credential store.

Non-secret fields (coordinator URL, room id, "remember" flag) live in QSettings.
Tokens and room secrets never do: they go through :mod:`sleap_rtc_plugin.peer.secrets`
(the OS keyring or an owner-only file), reached only via the two functions below so
the GUI has exactly one seam to that module.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_SERVER_URL = "ws://127.0.0.1:8765"
_ORG, _APP = "sleap-rtc", "gui"


@dataclass
class SavedConnection:
    server_url: str = ""
    room_id: str = ""
    remember: bool = False


def default_server_url() -> str:
    """Coordinator URL from ``SLEAP_RTC_SERVER_URL``, the project config, or loopback."""
    env = os.environ.get("SLEAP_RTC_SERVER_URL")
    if env:
        return env
    try:
        from sleap_rtc_plugin import config  # written by another engineer

        value = getattr(config, "load", None)
        if callable(value):
            url = getattr(value(), "server_url", None)
            if url:
                return str(url)
    except Exception as exc:  # config absent or unreadable: loopback default is safe
        logger.debug("no coordinator URL from config: %s", exc)
    return DEFAULT_SERVER_URL


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


def _secret_key(kind: str, room_id: str) -> str:
    return f"gui:{kind}:{room_id}"


def remember_secret(kind: str, room_id: str, value: str) -> bool:
    """Store a room token or secret in the credential store. False when none is available."""
    try:
        from sleap_rtc_plugin.peer import secrets

        secrets.create_secret(_secret_key(kind, room_id), value)
        return True
    except Exception as exc:
        logger.warning("could not store the %s for room %s: %s", kind, room_id, exc)
        return False


def recall_secret(kind: str, room_id: str) -> str | None:
    try:
        from sleap_rtc_plugin.peer import secrets

        return secrets.lookup_secret(_secret_key(kind, room_id))
    except Exception as exc:
        logger.debug("no stored %s for room %s: %s", kind, room_id, exc)
        return None
