"""The connection a user asked this computer to remember, kept owner-only.

A session string carries the room token (and often the room secret), so it never
goes to Qt's settings file. The secret goes to the room-secret credential store
(``peer/secrets.py``, 0600) where the CLI finds it too; the rest of the connection
(coordinator URL, room id, token, the session string minus its secret) goes to
``<config dir>/remembered-connection.json`` (0600). The GUI reaches both only
through this module, so it never imports ``peer`` itself.

Synchronous on purpose (tiny files); a failure is logged and reported as ``False``
or an empty connection, never raised into a dialog.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..peer import secrets
from ..protocol import ProtocolError
from ..protocol.session_string import SessionString
from ..util.private_files import write_private_json

log = logging.getLogger(__name__)

REMEMBERED_FILE = "remembered-connection.json"


@dataclass
class RememberedConnection:
    """Everything needed to reach the room again; ``room_secret`` lives in the credential store."""

    server_url: str = ""
    room_id: str = ""
    token: str = ""
    session_string: str = ""
    room_secret: str = ""


def _path() -> Path:
    return secrets.config_dir() / REMEMBERED_FILE


def split_session(text: str) -> tuple[str, str | None, SessionString | None]:
    """``(string without its secret, secret, decoded)``; the text unchanged when it does not decode."""
    try:
        session = SessionString.decode(text.strip())
    except (ProtocolError, ValueError):
        return text.strip(), None, None
    return session.without_secret().encode(), session.secret, session


def remember(conn: RememberedConnection) -> bool:
    """Keep ``conn`` on this computer: the secret in the credential store, the rest in a 0600 file."""
    stripped, embedded, session = split_session(conn.session_string) if conn.session_string else ("", None, None)
    room_id = session.room_id if session else conn.room_id  # a session string names its own room
    secret = conn.room_secret or embedded or ""
    data = {k: v for k, v in asdict(conn).items() if k != "room_secret"}
    data["session_string"] = stripped
    data["room_id"] = room_id
    try:
        path = _path()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private_json(path, data)
        if secret and room_id and secret != (recall_secret(room_id) or ""):
            secrets.store_secret(room_id, secret)
        return True
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("could not remember the connection in %s: %s", secrets.config_dir(), exc)
        return False


def recall() -> RememberedConnection:
    """The remembered connection (empty when there is none or it cannot be read)."""
    try:
        data = json.loads(_path().read_text())
    except FileNotFoundError:
        return RememberedConnection()
    except (OSError, ValueError) as exc:
        log.warning("ignoring the remembered connection %s: %s", _path(), exc)
        return RememberedConnection()
    if not isinstance(data, dict):
        return RememberedConnection()
    conn = RememberedConnection(**{f.name: str(data.get(f.name) or "") for f in fields(RememberedConnection) if f.name != "room_secret"})
    if conn.room_id:
        conn.room_secret = recall_secret(conn.room_id) or ""
    return conn


def forget() -> None:
    """Drop the remembered connection file (room secrets stay: the CLI may use them)."""
    try:
        _path().unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not forget the connection in %s: %s", _path(), exc)


def remember_secret(room_id: str, value: str) -> bool:
    """Store a room secret in the 0600 credential store; ``False`` (and a log line) when it cannot."""
    try:
        secrets.store_secret(room_id, value)
        return True
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("could not store the room secret for room %s: %s", room_id, exc)
        return False


def recall_secret(room_id: str) -> str | None:
    """The room secret the credential store (env var, secrets file) holds for ``room_id``."""
    try:
        value = secrets.lookup_secret(room_id)
    except (OSError, ValueError, RuntimeError) as exc:
        log.debug("no stored room secret for room %s: %s", room_id, exc)
        return None
    return value.decode() if isinstance(value, bytes) else value
