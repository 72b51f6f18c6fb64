"""The "Remote worker" section shared by Train remotely… and Track remotely….

Connection fields, a live worker table and the job's stage line. Listing workers
is a coroutine on the qasync loop; the table fills in when it answers, so the
dialog never waits on the network. The table never shows stale rows: it empties
when a refresh fails or the fields change, and refreshes by itself while shown.
A pasted session string names its coordinator, and that URL replaces the field
(the user may still edit it afterwards). Once workers are listed the fields fold
away to one summary line, keeping the dialog within SLEAP's own dialog height.
"""

from __future__ import annotations

import logging
from typing import Any

from qtpy import QtCore, QtWidgets

from .. import settings
from ..qt_async import spawn
from .errors import show_error
from .stages import StageTracker, StageView
from .worker_table import COLUMNS, WorkerTable  # noqa: F401  (COLUMNS: public, used by tests)

logger = logging.getLogger(__name__)

FIELD_CHANGE_DEBOUNCE_MS = 700


def client_api():
    """The client library, imported when first needed (it pulls in aiortc)."""
    from sleap_rtc_plugin.client import api

    return api


def decode_session(text: str):
    """The ``SessionString`` in ``text``, or ``None`` while it is empty or incomplete."""
    from sleap_rtc_plugin.protocol import ProtocolError
    from sleap_rtc_plugin.protocol.session_string import SessionString

    if not text.strip():
        return None
    try:
        return SessionString.decode(text)
    except (ProtocolError, ValueError):
        return None


def refresh_interval_s() -> float:
    try:
        from sleap_rtc_plugin.config import load_settings

        return float(load_settings().get("gui.worker_refresh_s", 15.0))
    except Exception as exc:  # an unreadable config must not stop the GUI
        logger.warning("could not read gui.worker_refresh_s: %s", exc)
        return 15.0


class ConnectionPanel(QtWidgets.QGroupBox):
    """Coordinator/room fields, worker list with Refresh and Auto-select, the job's stages."""

    workers_changed = QtCore.Signal(list)
    refresh_failed = QtCore.Signal(object)

    def __init__(self, parent=None, *, defaults: Any = None):
        super().__init__("Remote worker", parent)
        self.workers: list[Any] = []
        self._refresh_task: Any = None  # the running worker-list request (qt_async.spawn)
        self._quiet_refresh = True
        self._user_expanded = False
        self.last_error_box = None
        saved = settings.load_saved()
        config = settings.config_defaults()

        self.server_url = QtWidgets.QLineEdit(saved.server_url or config.get("signaling_ws") or settings.DEFAULT_SERVER_URL)
        self.room_id = QtWidgets.QLineEdit(saved.room_id or config.get("room_id") or "")
        self.room_id.setPlaceholderText("room id")
        self.token = QtWidgets.QLineEdit(config.get("token") or "")
        self.token.setEchoMode(QtWidgets.QLineEdit.Password)
        self.token.setPlaceholderText("room token")
        self.session_string = QtWidgets.QLineEdit()
        self.session_string.setPlaceholderText("sleap-session:… (the line the worker printed; instead of room id and token)")
        self.room_secret = QtWidgets.QLineEdit()
        self.room_secret.setEchoMode(QtWidgets.QLineEdit.Password)
        self.room_secret.setPlaceholderText("only if the worker requires one")
        self.remember = QtWidgets.QCheckBox("Remember on this computer")
        self.remember.setToolTip("Keep the whole connection (session string, room, token and room secret) for next time; "
                                 "tokens and secrets go to owner-only files, never to SLEAP's settings.")
        self.remember.setChecked(saved.remember)
        self.session_string.textChanged.connect(self._on_session_changed)
        self._fill_remembered(settings.last_connection())
        if defaults is not None:
            self._apply_defaults(defaults)

        self.toggle = QtWidgets.QToolButton()
        self.toggle.setCheckable(True)
        self.toggle.setChecked(True)
        self.toggle.setArrowType(QtCore.Qt.DownArrow)
        self.toggle.setToolButtonStyle(QtCore.Qt.ToolButtonTextBesideIcon)
        self.toggle.setText("Connection")
        self.toggle.setAutoRaise(True)
        self.toggle.toggled.connect(self._on_toggle)
        self.summary = QtWidgets.QLabel("")
        header = QtWidgets.QHBoxLayout()
        header.addWidget(self.toggle)
        header.addWidget(self.summary, 1)

        self.fields = QtWidgets.QWidget()
        form = QtWidgets.QGridLayout(self.fields)
        form.setContentsMargins(0, 0, 0, 0)
        form.addWidget(QtWidgets.QLabel("Session string:"), 0, 0)
        form.addWidget(self.session_string, 0, 1, 1, 5)
        form.addWidget(QtWidgets.QLabel("Coordinator:"), 1, 0)
        form.addWidget(self.server_url, 1, 1)
        form.addWidget(QtWidgets.QLabel("Room:"), 1, 2)
        form.addWidget(self.room_id, 1, 3)
        form.addWidget(QtWidgets.QLabel("Token:"), 1, 4)
        form.addWidget(self.token, 1, 5)
        form.addWidget(QtWidgets.QLabel("Room secret:"), 2, 0)
        form.addWidget(self.room_secret, 2, 1)
        form.addWidget(self.remember, 2, 2, 1, 4)
        form.setColumnStretch(1, 3)
        form.setColumnStretch(3, 2)
        form.setColumnStretch(5, 2)

        self.table = WorkerTable()
        self.refresh_button = QtWidgets.QPushButton("Refresh")
        self.refresh_button.setAutoDefault(False)
        self.refresh_button.clicked.connect(lambda: self.refresh())
        self.auto_select = QtWidgets.QCheckBox("Auto-select the best available worker")
        self.auto_select.toggled.connect(self._on_auto_select)
        self.min_gpu = QtWidgets.QSpinBox()
        self.min_gpu.setRange(0, 1024 * 1024)
        self.min_gpu.setSingleStep(1024)
        self.min_gpu.setSuffix(" MB")
        self.min_gpu.setSpecialValueText("any")
        self.min_gpu.setToolTip("Only list workers with at least this much free GPU memory.")

        list_row = QtWidgets.QHBoxLayout()
        list_row.addWidget(self.auto_select)
        list_row.addStretch()
        list_row.addWidget(QtWidgets.QLabel("Min. free GPU memory:"))
        list_row.addWidget(self.min_gpu)
        list_row.addWidget(self.refresh_button)

        self.status = QtWidgets.QLabel("Press Refresh to list the workers in this room.")
        self.status.setWordWrap(True)
        self.stages = StageView()
        self.progress = self.stages.bar
        self.job_stages: StageTracker | None = None

        # never taller than its contents: folded fields give their room back to SLEAP's tabs
        self.setSizePolicy(QtWidgets.QSizePolicy.Preferred, QtWidgets.QSizePolicy.Maximum)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.fields)
        layout.addLayout(list_row)
        layout.addWidget(self.table)
        layout.addWidget(self.stages)
        layout.addWidget(self.status)

        self._debounce = QtCore.QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(FIELD_CHANGE_DEBOUNCE_MS)
        self._debounce.timeout.connect(self._auto_refresh)
        self.auto_timer = QtCore.QTimer(self)
        self.auto_timer.setInterval(int(max(1.0, refresh_interval_s()) * 1000))
        self.auto_timer.timeout.connect(self._auto_refresh)
        for field in (self.server_url, self.room_id, self.token, self.session_string):
            field.textChanged.connect(self._on_fields_changed)
        self.min_gpu.valueChanged.connect(self._on_fields_changed)
        self._update_summary()

    # --- filling the fields --------------------------------------------------

    def _fill_remembered(self, conn: Any) -> None:
        """This session's (or this computer's) last connection; the session string first, so
        a URL the user edited after pasting it stays as they left it."""
        if conn is None:
            return
        if conn.session_string:
            self.session_string.setText(conn.session_string)
        for name in ("server_url", "room_id", "token", "room_secret"):
            value = getattr(conn, name, "")
            if value:
                getattr(self, name).setText(value)

    def _apply_defaults(self, spec: Any) -> None:
        for name in ("session_string", "server_url", "room_id", "token", "room_secret"):
            value = getattr(spec, name, None)
            if value:
                getattr(self, name).setText(str(value))
        if getattr(spec, "auto_select", False):
            self.auto_select.setChecked(True)

    def reload_shared(self) -> None:
        """Pick up the connection the other dialog used, unless this one holds its own."""
        conn = settings.last_connection()
        if conn is None or self.session_string.text().strip() or (self.room_id.text().strip() and self.token.text().strip()):
            return
        self._fill_remembered(conn)

    def _on_session_changed(self, text: str) -> None:
        """The session string's own coordinator wins over whatever the URL field held."""
        session = decode_session(text)
        if session is not None and session.server_url and session.server_url != self.server_url.text().strip():
            self.server_url.setText(session.server_url)
            self.server_url.setToolTip("Taken from the session string; edit it to use another coordinator.")

    def _on_auto_select(self, checked: bool) -> None:
        self.table.setEnabled(not checked)

    def _on_fields_changed(self, *_: Any) -> None:
        """Rows listed for other fields are wrong now: drop them, and list again shortly."""
        if self.workers or self.table.rowCount():
            self.set_workers_cleared("The connection changed: listing the workers again…")
        self._update_summary()
        if self.isEnabled() and self.problem(need_worker=False) is None:
            self._debounce.start()

    def _on_toggle(self, expanded: bool) -> None:
        """The user folded or unfolded the fields: an unfolded panel stays so."""
        self._user_expanded = expanded
        self._show_fields(expanded)

    def _show_fields(self, expanded: bool) -> None:
        self.fields.setVisible(expanded)
        self.toggle.setArrowType(QtCore.Qt.DownArrow if expanded else QtCore.Qt.RightArrow)

    def set_collapsed(self, collapsed: bool) -> None:
        blocked = self.toggle.blockSignals(True)
        self.toggle.setChecked(not collapsed)
        self.toggle.blockSignals(blocked)
        self._show_fields(not collapsed)

    def _update_summary(self) -> None:
        session = decode_session(self.session_string.text())
        room = session.room_id if session else self.room_id.text().strip()
        where = self.server_url.text().strip()
        text = f"room {room} on {where}" if room else where
        if self.workers:
            text += f" · {len(self.workers)} worker(s)"
        self.summary.setText(text)

    # --- the connection spec -------------------------------------------------

    def selected_worker_id(self) -> str | None:
        return self.table.selected_worker_id()

    def problem(self, *, need_worker: bool) -> str | None:
        """What the user still has to fill in, or ``None``."""
        if not self.server_url.text().strip():
            return "Enter the coordinator URL (ask your lab admin, or see `sleap-rtc server`)."
        if not self.session_string.text().strip() and not (self.room_id.text().strip() and self.token.text().strip()):
            return "Enter a room ID and token, or paste a session string."
        if need_worker and not self.auto_select.isChecked() and not self.session_string.text().strip():
            if self.selected_worker_id() is None:
                return "Select a worker in the list (press Refresh), or tick Auto-select."
        return None

    def spec(self):
        """The ``ConnectionSpec`` the form describes."""
        api = client_api()
        session = self.session_string.text().strip() or None
        return api.ConnectionSpec(
            server_url=self.server_url.text().strip() or None,
            room_id=None if session else (self.room_id.text().strip() or None),
            token=None if session else (self.token.text().strip() or None),
            session_string=session,
            worker_id=None if (session or self.auto_select.isChecked()) else self.selected_worker_id(),  # a session string names its worker
            auto_select=self.auto_select.isChecked(),
            min_gpu_memory_mb=self.min_gpu.value() or None,
            room_secret=self.room_secret.text() or None,
        )

    def connection(self):
        """The fields as a ``RememberedConnection`` (what is shared and, if asked, remembered)."""
        from sleap_rtc_plugin.client.credentials import RememberedConnection

        return RememberedConnection(
            server_url=self.server_url.text().strip(), room_id=self.room_id.text().strip(), token=self.token.text().strip(),
            session_string=self.session_string.text().strip(), room_secret=self.room_secret.text().strip(),
        )

    def persist(self) -> None:
        """Share the connection with the other dialog; keep it on this computer if asked
        (tokens and secrets only in owner-only files, via ``client.credentials``)."""
        settings.use_connection(self.connection(), remember=self.remember.isChecked())

    # --- worker list ---------------------------------------------------------

    def refresh(self, *, quiet: bool = False) -> None:
        """List workers in the background; the table updates when they arrive.

        ``quiet`` (the timer, a field change): a failure empties the table and says so in
        the status line, without a message box. A press on Refresh is never quiet.
        """
        problem = self.problem(need_worker=False)
        if problem:
            if not quiet:
                self.status.setText(problem)
            return
        if not quiet:
            self._quiet_refresh = False
        if self._refresh_task is not None and not self._refresh_task.done():
            return
        self._quiet_refresh = quiet
        self.refresh_button.setEnabled(False)
        if not quiet:
            self.status.setText("Asking the coordinator for workers…")
        self._refresh_task = spawn(self._list(), on_error=self._on_refresh_error)

    def _auto_refresh(self) -> None:
        if self.isVisible() and self.isEnabled() and self.refresh_button.isEnabled() and self.server_url.isEnabled():
            self.refresh(quiet=True)

    async def _list(self) -> None:
        spec = self.spec()
        spec.worker_id = None
        asked = self.connection()
        workers = await client_api().list_workers(spec)
        if self.connection() != asked:  # the fields changed meanwhile: these rows belong to the old ones
            self.refresh_button.setEnabled(self.server_url.isEnabled())
            self._debounce.start()
            return
        self.set_workers(workers)

    def _on_refresh_error(self, exc: BaseException) -> None:
        self.set_workers_cleared(f"Could not list workers: {exc}")
        self.refresh_failed.emit(exc)
        if not self._quiet_refresh:
            self.last_error_box = show_error(self, exc)
        self._quiet_refresh = True

    def set_workers_cleared(self, why: str) -> None:
        self.refresh_button.setEnabled(self.server_url.isEnabled())  # stays off while a job runs
        self.workers = []
        self.table.clear_workers()
        self.status.setText(why)
        self._update_summary()
        self.workers_changed.emit(self.workers)

    def _have_secret(self) -> bool:
        if self.room_secret.text().strip():
            return True
        session = decode_session(self.session_string.text())
        if session is not None and session.secret:
            return True
        room = session.room_id if session else self.room_id.text().strip()
        return bool(room and settings.recall_secret(room))

    def set_workers(self, workers: list[Any]) -> None:
        self.refresh_button.setEnabled(self.server_url.isEnabled())  # stays off while a job runs
        quiet, self._quiet_refresh = self._quiet_refresh, True
        self.workers = list(workers)
        self.table.fill(self.workers, have_secret=self._have_secret())
        available = sum(1 for w in self.workers if getattr(w, "status", "") == "available")
        if not quiet or self.job_stages is None:  # a timed refresh never hides how the last job went
            self.status.setText(f"{len(self.workers)} worker(s) in this room, {available} available.")
        self._update_summary()
        if self.workers and not self._user_expanded:
            self.set_collapsed(True)
        self.workers_changed.emit(self.workers)

    # --- visibility and progress --------------------------------------------

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.auto_timer.start()

    def hideEvent(self, event) -> None:
        self.auto_timer.stop()
        self._debounce.stop()
        super().hideEvent(event)

    def tracker(self, kind: str) -> StageTracker:
        """A fresh stage tracker for one job of ``kind`` (``train`` or ``track``)."""
        self.job_stages = StageTracker(self.stages, self.status, kind)
        return self.job_stages

    def set_busy(self, busy: bool) -> None:
        for w in (self.server_url, self.room_id, self.token, self.session_string, self.room_secret, self.table,
                  self.refresh_button, self.auto_select, self.min_gpu, self.remember):
            w.setEnabled(not busy)
        if busy:
            self._debounce.stop()
            self.set_collapsed(True)
        else:
            self.table.setEnabled(not self.auto_select.isChecked())
