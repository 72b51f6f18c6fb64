"""What ``sleap-rtc worker`` prints when it is ready, and where the credentials go.

The session string carries the room token and the room secret: whoever has it can
use the worker. On an interactive terminal the operator sees it in full (to copy
it). A service's stdout goes to journald or a log file that many can read, so there
the banner shows a masked form and the full string goes to an owner-only file in
the data dir, named in one line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from ..protocol.session_string import SessionString
from .ports import BannerSource

SESSION_FILE = "session-string.txt"


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by the owner only (0600 from creation; atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def render(worker: BannerSource, *, interactive: bool) -> str:
    """The banner; non-interactive: masked, with the full string saved to :data:`SESSION_FILE`."""
    if worker.enrolled:
        return _render_enrolled(worker)
    session = SessionString.decode(worker.session_string())
    lines = [
        f"sleap-rtc worker {worker.name} is ready ({worker.capabilities.get('accelerator', 'cpu')}).",
        f"  coordinator: {worker.server_url}" + ("  (embedded in this worker)" if worker.embedded else ""),
        f"  room id:     {worker.room_id}",
        f"  room token:  {worker.token if interactive else '****** (in the session file)'}",
        f"  worker id:   {worker.peer_id}",
    ]
    if worker.status_server is not None:
        lines.append(f"  status:      http://127.0.0.1:{worker.status_server.port}/status")
    if interactive:
        lines += ["", "Connect a client to this worker with:", f"  sleap-rtc client-train --session-string {session.encode()} --pkg-path PACKAGE"]
    else:
        path = write_private(worker.data_dir / SESSION_FILE, session.encode())
        lines += [
            f"  session:     {session.masked()}",
            f"  session file: {path}",
            "",
            f"Not a terminal: the full session string (room token{' and secret' if session.secret else ''}) is only in {path} (owner-only).",
            "Connect a client to this worker with:",
            f"  sleap-rtc client-train --session-string \"$(cat {path})\" --pkg-path PACKAGE",
        ]
    lines.append("Or join more workers/clients to the room with --room-id and --token" + (" (and the room secret)." if session.secret else "."))
    if worker.secret is None:
        lines.append("No room secret set (--insecure-no-secret): any client with the room token may use this worker.")
    return "\n".join(lines)


def _render_enrolled(worker: BannerSource) -> str:
    """An enrolled worker shows no token at all: its worker token is its own credential."""
    lines = [
        f"sleap-rtc worker {worker.name} is ready ({worker.capabilities.get('accelerator', 'cpu')}).",
        f"  coordinator: {worker.server_url}",
        f"  room id:     {worker.room_id}",
        "  worker token: ****** (enrolled; never give it to clients)",
        f"  worker id:   {worker.peer_id}",
    ]
    if worker.status_server is not None:
        lines.append(f"  status:      http://127.0.0.1:{worker.status_server.port}/status")
    lines += ["", f"Clients reach this worker through room {worker.room_id} with the room token and room secret from the administrator",
              f"(pick worker {worker.peer_id}, or submit with --queue)."]
    return "\n".join(lines)


def print_banner(worker: BannerSource, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    isatty = getattr(stream, "isatty", None)
    print(render(worker, interactive=bool(isatty and isatty())), file=stream, flush=True)


__all__ = ["SESSION_FILE", "print_banner", "render", "write_private"]
