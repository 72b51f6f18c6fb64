"""Remembered connection settings and the thin line to the credential store.

Non-secret fields (coordinator URL, room id, "remember" flag) live in QSettings.
Tokens, session strings and room secrets never do: they go through
:mod:`sleap_rtc_plugin.client.credentials` (owner-only files and the room-secret
credential store), the GUI's one seam to them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sleap_rtc_plugin import config as _config

logger = logging.getLogger(__name__)

DEFAULT_SERVER_URL = _config.default_server_url()
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
    """Store a room secret in the 0600 credential store (see ``client/credentials.py``)."""
    from sleap_rtc_plugin.client import credentials

    return credentials.remember_secret(room_id, value)


def recall_secret(room_id: str) -> str | None:
    """The room secret the credential store (env var, secrets file) holds for ``room_id``."""
    from sleap_rtc_plugin.client import credentials

    return credentials.recall_secret(room_id)


# The connection last used in this SLEAP session, shared by Train and Track remotely even
# when the user did not ask to remember it on this computer.
_last_used = None


def last_connection():
    """What Train/Track remotely should pre-fill: this session's last connection, else the
    remembered one (``client.credentials.RememberedConnection``), else ``None``."""
    if _last_used is not None:
        return _last_used
    if not load_saved().remember:
        return None
    from sleap_rtc_plugin.client import credentials

    conn = credentials.recall()
    return conn if (conn.session_string or conn.room_id) else None


def use_connection(conn, *, remember: bool) -> None:
    """Share ``conn`` with the other dialog; keep it on this computer only when asked."""
    global _last_used
    from sleap_rtc_plugin.client import credentials

    _last_used = conn
    save_connection(SavedConnection(server_url=conn.server_url, room_id=conn.room_id, remember=remember))
    if remember:
        credentials.remember(conn)
    else:
        credentials.forget()
