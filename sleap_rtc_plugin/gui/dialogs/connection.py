"""The "Remote worker" section shared by Train remotely… and Track remotely….

Connection fields, a live worker table and the job progress line. Listing workers
is a coroutine on the qasync loop; the table fills in when it answers, so the
dialog never waits on the network.
"""

from __future__ import annotations

import logging
from typing import Any

from qtpy import QtCore, QtWidgets

from .. import settings
from ..qt_async import spawn
from .errors import show_error

logger = logging.getLogger(__name__)

COLUMNS = ("Worker", "GPU", "Free memory", "Status", "Host", "Labels")


def client_api():
    """The client library, imported when first needed (it pulls in aiortc)."""
    from sleap_rtc_plugin.client import api

    return api


def _fmt_mb(free: Any, total: Any) -> str:
    if free is None or (not free and not total):
        return "—"
    text = f"{free / 1024:.1f} GB" if free >= 1024 else f"{free} MB"
    if total:
        text += f" / {total / 1024:.0f} GB"
    return text


class ConnectionPanel(QtWidgets.QGroupBox):
    """Coordinator/room fields, worker list with Refresh and Auto-select, progress."""

    workers_changed = QtCore.Signal(list)
    refresh_failed = QtCore.Signal(object)

    def __init__(self, parent=None, *, defaults: Any = None):
        super().__init__("Remote worker", parent)
        self.workers: list[Any] = []
        self._refresh_task = None
        self.last_error_box = None
        saved = settings.load_saved()
        config = settings.config_defaults()

        self.server_url = QtWidgets.QLineEdit(saved.server_url or config.get("signaling_ws") or settings.DEFAULT_SERVER_URL)
        self.room_id = QtWidgets.QLineEdit(saved.room_id or config.get("room_id") or "")
        self.token = QtWidgets.QLineEdit(config.get("token") or "")
        self.token.setEchoMode(QtWidgets.QLineEdit.Password)
        self.session_string = QtWidgets.QLineEdit()
        self.session_string.setPlaceholderText("sleap-session:… (instead of room id and token)")
        self.room_secret = QtWidgets.QLineEdit()
        self.room_secret.setEchoMode(QtWidgets.QLineEdit.Password)
        self.room_secret.setPlaceholderText("only if the worker requires one")
        self.remember = QtWidgets.QCheckBox("Remember on this computer (secrets go to the credential store)")
        self.remember.setChecked(saved.remember)
        if saved.remember and saved.room_id:
            self.room_secret.setText(settings.recall_secret(saved.room_id) or "")
        if defaults is not None:
            self._apply_defaults(defaults)

        form = QtWidgets.QFormLayout()
        form.addRow("Coordinator URL:", self.server_url)
        room_row = QtWidgets.QHBoxLayout()
        room_row.addWidget(self.room_id, 1)
        room_row.addWidget(QtWidgets.QLabel("Token:"))
        room_row.addWidget(self.token, 1)
        form.addRow("Room ID:", room_row)
        form.addRow("Session string:", self.session_string)
        form.addRow("Room secret:", self.room_secret)
        form.addRow("", self.remember)

        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(90)
        self.table.setMaximumHeight(150)

        self.refresh_button = QtWidgets.QPushButton("Refresh")
        self.refresh_button.setAutoDefault(False)
        self.refresh_button.clicked.connect(self.refresh)
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
        self.progress = QtWidgets.QProgressBar()
        self.progress.setVisible(False)
        self.progress.setFormat("%p%  %v / %m MB")

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(list_row)
        layout.addWidget(self.table)
        layout.addWidget(self.status)
        layout.addWidget(self.progress)

    def _apply_defaults(self, spec: Any) -> None:
        for name in ("server_url", "room_id", "token", "session_string", "room_secret"):
            value = getattr(spec, name, None)
            if value:
                getattr(self, name).setText(str(value))
        if getattr(spec, "auto_select", False):
            self.auto_select.setChecked(True)

    def _on_auto_select(self, checked: bool) -> None:
        self.table.setEnabled(not checked)

    # --- the connection spec -------------------------------------------------

    def selected_worker_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.table.item(rows[0].row(), 0).data(QtCore.Qt.UserRole)

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

    def persist(self) -> None:
        """Save what the user asked to remember (secrets only via the credential store)."""
        saved = settings.SavedConnection(
            server_url=self.server_url.text().strip(), room_id=self.room_id.text().strip(), remember=self.remember.isChecked()
        )
        settings.save_connection(saved)
        if saved.remember and saved.room_id:
            if self.room_secret.text() and self.room_secret.text() != (settings.recall_secret(saved.room_id) or ""):
                settings.remember_secret(saved.room_id, self.room_secret.text())

    # --- worker list ---------------------------------------------------------

    def refresh(self) -> None:
        """List workers in the background; the table updates when they arrive."""
        problem = self.problem(need_worker=False)
        if problem:
            self.status.setText(problem)
            return
        if self._refresh_task is not None and not self._refresh_task.done():
            return
        self.refresh_button.setEnabled(False)
        self.status.setText("Asking the coordinator for workers…")
        self._refresh_task = spawn(self._list(), on_error=self._on_refresh_error)

    async def _list(self) -> None:
        spec = self.spec()
        spec.worker_id = None
        workers = await client_api().list_workers(spec)
        self.set_workers(workers)

    def _on_refresh_error(self, exc: BaseException) -> None:
        self.refresh_button.setEnabled(True)
        self.status.setText(f"Could not list workers: {exc}")
        self.refresh_failed.emit(exc)
        self.last_error_box = show_error(self, exc)

    def set_workers(self, workers: list[Any]) -> None:
        self.refresh_button.setEnabled(True)
        previous = self.selected_worker_id()
        self.workers = list(workers)
        self.table.setRowCount(len(self.workers))
        for row, w in enumerate(self.workers):
            labels = ", ".join(f"{k}={v}" for k, v in sorted((getattr(w, "labels", None) or {}).items()))
            gpu = getattr(w, "gpu_name", None) or getattr(w, "accelerator", None) or "CPU"
            cells = (
                getattr(w, "name", None) or w.peer_id,
                gpu,
                _fmt_mb(getattr(w, "gpu_memory_free_mb", None), getattr(w, "gpu_memory_total_mb", None)),
                getattr(w, "status", "") or "",
                getattr(w, "hostname", "") or "",
                labels,
            )
            for col, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(str(text))
                if col == 0:
                    item.setData(QtCore.Qt.UserRole, w.peer_id)
                    item.setToolTip(w.peer_id)
                self.table.setItem(row, col, item)
            if w.peer_id == previous or (previous is None and row == 0 and getattr(w, "status", "") == "available"):
                self.table.selectRow(row)
        self.table.resizeColumnsToContents()
        available = sum(1 for w in self.workers if getattr(w, "status", "") == "available")
        self.status.setText(f"{len(self.workers)} worker(s) in this room, {available} available.")
        self.workers_changed.emit(self.workers)

    # --- progress ------------------------------------------------------------

    def show_transfer(self, done: int, total: int, what: str = "Sending") -> None:
        self.progress.setVisible(True)
        self.progress.setMaximum(max(1, total // (1024 * 1024)))
        self.progress.setValue(min(done, total) // (1024 * 1024))
        self.status.setText(f"{what}… {done / 1e6:.1f} of {total / 1e6:.1f} MB")

    def set_busy(self, busy: bool) -> None:
        for w in (self.server_url, self.room_id, self.token, self.session_string, self.room_secret, self.table,
                  self.refresh_button, self.auto_select, self.min_gpu):
            w.setEnabled(not busy)
        if not busy:
            self.table.setEnabled(not self.auto_select.isChecked())
            self.progress.setVisible(False)
