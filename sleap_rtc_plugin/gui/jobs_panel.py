"""Predict → Remote Jobs…: this project's remote jobs, and what a user can do with each.

A non-modal window over the project's job list (``client.api.list_jobs``, kept in the
project folder, so it survives restarts). Each row reads in plain words
(``jobs_view.py``). Actions go through the client API, like the CLI's:

- **Watch live** follows the job in SLEAP's own LossViewer: the worker replays the
  epochs so far, then live ones follow; results are fetched when it ends.
- **Fetch results** follows without a viewer; a job whose results are installed is not
  fetched again (``fetch_job`` returns ``None``), nor one this panel already follows.
- **Stop early** / **Cancel** reach the worker (or the queue) through the job's handle,
  following the job first when nobody does yet.
- **Show log** shows the worker's last sleap-nn lines; **Run again** submits the same
  package and options as a new job; **Remove from list** forgets the entry.

Nothing here blocks Qt: every network step is a coroutine started with ``spawn``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from qtpy import QtCore, QtGui, QtWidgets

from ..protocol.job_state import JobState as S
from . import jobs_view
from .notify import notify
from .qt_async import spawn

logger = logging.getLogger(__name__)

PANEL_KEY = "remote_jobs"
MENU_TEXT = "Remote Jobs..."
RELOAD_MS = 1000
#: How long Stop early / Cancel wait for a job that nobody followed to be reachable.
CONTROL_WAIT_S = 60.0


def _api():
    from sleap_rtc_plugin.client import api

    return api


def connection_for(window: Any) -> Any:
    """Where this window's jobs are followed from: a site plugin's default connection,
    else the connection last used in Train/Track remotely (or remembered), else config."""
    from .manager import host_of
    from . import settings

    api = _api()
    host = host_of(window)
    spec = host.hook.sleap_rtc_default_connection(window=window) if host else None
    if spec is not None:
        return spec
    conn = settings.last_connection()
    if conn is None:
        return api.ConnectionSpec()
    return api.ConnectionSpec(**{k: getattr(conn, k, None) or None for k in ("session_string", "server_url", "room_id", "token", "room_secret")})


class RemoteJobsPanel(QtWidgets.QDialog):
    def __init__(self, window: Any, *, connection: Any = None):
        super().__init__(window)
        self.main_window = window
        self.setModal(False)
        self.setWindowTitle("Remote Jobs")
        self.project_dir = Path(window.state["filename"]).parent
        self.connection = connection
        self.records: list[Any] = []
        self.handles: dict[str, Any] = {}
        self.merged: dict[str, int] = {}  # job id -> frames whose predictions this panel added
        self.viewers: dict[str, Any] = {}
        self.follow_tasks: dict[str, asyncio.Future] = {}
        self.last_notification: Any = None
        self.log_box: QtWidgets.QDialog | None = None

        self.table = QtWidgets.QTableWidget(0, len(jobs_view.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(jobs_view.COLUMNS))
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
        header.setSectionResizeMode(jobs_view.COLUMNS.index("State"), QtWidgets.QHeaderView.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)

        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        row = QtWidgets.QHBoxLayout()
        for key, text, slot, tip in (
            ("watch", "Watch live", self.watch_live, "Follow the training curve in SLEAP's loss viewer (epochs so far, then live)."),
            ("stop", "Stop early", self.stop_early, "Finish training now, keeping the best model so far."),
            ("cancel", "Cancel", self.cancel_job, "Cancel the job; nothing is returned."),
            ("fetch", "Fetch results", self.fetch_results, "Install the results in this project (once)."),
            ("log", "Show log", self.show_log, "The worker's last sleap-nn output lines."),
            ("again", "Run again", self.run_again, "Submit the same package with the same settings as a new job."),
            ("remove", "Remove from list", self.remove_job, "Forget this entry (installed results stay)."),
        ):
            button = QtWidgets.QPushButton(text)
            button.setToolTip(tip)
            button.setAutoDefault(False)
            button.clicked.connect(lambda checked=False, s=slot: s())
            row.addWidget(button)
            self.buttons[key] = button
        refresh = QtWidgets.QPushButton("Refresh")
        refresh.setToolTip("Ask the coordinator about queued jobs, and reread the list.")
        refresh.setAutoDefault(False)
        refresh.clicked.connect(lambda: self.refresh())
        row.addStretch()
        row.addWidget(refresh)

        self.status = QtWidgets.QLabel(f"Remote jobs of {self.project_dir}")
        self.status.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.resize(900, 360)

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(RELOAD_MS)
        self.timer.timeout.connect(self.reload)
        self._update_buttons()

    # -- the list ------------------------------------------------------------------------
    def spec(self) -> Any:
        return self.connection if self.connection is not None else connection_for(self.main_window)

    def showEvent(self, event: Any) -> None:
        self.timer.start()
        self.reload()
        super().showEvent(event)

    def hideEvent(self, event: Any) -> None:
        self.timer.stop()
        super().hideEvent(event)

    def reload(self) -> asyncio.Future | None:
        """Reread the job list (files only: cheap, every second while shown)."""
        if self._loop_gone():
            self.timer.stop()
            return None
        return spawn(self._reload(False), on_error=self._say_error)

    @staticmethod
    def _loop_gone() -> bool:
        try:
            return asyncio.get_event_loop_policy().get_event_loop().is_closed()
        except RuntimeError:
            return True

    def refresh(self) -> asyncio.Future:
        """Reread the list and ask the coordinator about queued jobs."""
        return spawn(self._reload(True), on_error=self._say_error)

    async def _reload(self, ask_coordinator: bool) -> None:
        records = await _api().list_jobs(self.project_dir, self.spec() if ask_coordinator else None)
        self._fill(records)

    def _fill(self, records: list[Any]) -> None:
        chosen = self.selected()
        self.records = records
        self.table.setRowCount(len(records))
        for i, record in enumerate(records):
            for j, text in enumerate(jobs_view.row(record)):
                item = self.table.item(i, j)
                if item is None:
                    self.table.setItem(i, j, QtWidgets.QTableWidgetItem(text))
                elif item.text() != text:
                    item.setText(text)
        if chosen is not None:
            self.select(chosen.job_id)
        self._update_buttons()

    def record(self, job_id: str) -> Any:
        return next((r for r in self.records if r.job_id == job_id), None)

    def select(self, job_id: str) -> bool:
        for i, record in enumerate(self.records):
            if record.job_id == job_id:
                self.table.selectRow(i)
                return True
        return False

    def selected(self) -> Any:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or rows[0].row() >= len(self.records):
            return None
        return self.records[rows[0].row()]

    def _update_buttons(self) -> None:
        record = self.selected()
        live = record is not None and (record.job_id in self.handles or _api().live_handle(record.job_id) is not None)
        over = record is not None and record.state in (S.ACKNOWLEDGED, S.FAILED, S.CANCELLED)
        enabled = {
            "watch": record is not None and record.kind == "train" and not over and record.job_id not in self.viewers,
            "stop": record is not None and record.kind == "train" and record.state in (S.ACCEPTED, S.RUNNING),
            "cancel": record is not None and not over,
            "fetch": record is not None and not over and not live,
            "log": record is not None,
            "again": record is not None and bool(record.package),
            "remove": record is not None and not live,
        }
        for key, button in self.buttons.items():
            button.setEnabled(enabled[key])

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _say_error(self, exc: BaseException) -> None:
        logger.warning("remote jobs: %s", exc)
        self._say(f"{getattr(exc, 'code', 'error')}: {getattr(exc, 'message', None) or exc}")

    # -- following a job -----------------------------------------------------------------
    def _open_viewer(self, record: Any) -> Any:
        from sleap.gui.widgets.monitor import LossViewer

        from .dialogs.train import free_port

        viewer = LossViewer(zmq_ports={"publish_port": free_port(), "controller_port": free_port()})
        viewer.resize(600, 400)
        viewer.setWindowTitle(f"Training Model - remote job {record.job_id}")
        viewer.set_message(f"Following job {record.job_id}: the epochs so far, then live…")
        if viewer.cancel_button is not None:
            viewer.cancel_button.clicked.connect(lambda: self._control(record.job_id, "cancel"))
        viewer.show()
        self.viewers[record.job_id] = viewer
        return viewer

    def watch_live(self, record: Any = None) -> Any:
        """Follow the job in a LossViewer; returns its handle (``None`` when nothing to follow)."""
        record = record or self.selected()
        if record is None:
            return None
        if record.job_id in self.viewers:
            self.viewers[record.job_id].raise_()
            return self.handles.get(record.job_id)
        if record.job_id in self.handles or _api().live_handle(record.job_id) is not None:
            self._say(f"Job {record.job_id} is already followed (without a curve here); its results are installed when it ends.")
            return self.handles.get(record.job_id)
        viewer = self._open_viewer(record)
        ports = viewer.zmq_ports
        return self._start(record, lambda spec: _api().fetch_job(record.job_id, spec, project_dir=self.project_dir,
                                                                  publish_port=ports["publish_port"], controller_port=ports["controller_port"]))

    def fetch_results(self, record: Any = None) -> Any:
        """Follow the job until its results are installed; nothing when that happened already."""
        record = record or self.selected()
        if record is None:
            return None
        if record.job_id in self.handles or _api().live_handle(record.job_id) is not None:
            self._say(f"Job {record.job_id} is already being followed; its results are installed when it ends.")
            return None
        return self._start(record, lambda spec: _api().fetch_job(record.job_id, spec, project_dir=self.project_dir))

    def run_again(self, record: Any = None) -> Any:
        record = record or self.selected()
        if record is None:
            return None
        if record.kind == "train":
            viewer = self._open_viewer(record)
            ports = viewer.zmq_ports

            def make(spec: Any) -> Any:
                return _api().run_again(record.job_id, spec, project_dir=self.project_dir, publish_port=ports["publish_port"],
                                        controller_port=ports["controller_port"])
        else:
            viewer = None

            def make(spec: Any) -> Any:
                return _api().run_again(record.job_id, spec, project_dir=self.project_dir)
        handle = self._start(record, make, viewer_key=record.job_id if viewer else None)
        return handle

    def _start(self, record: Any, make: Any, *, viewer_key: str | None = None) -> Any:
        api = _api()
        viewer_key = viewer_key or record.job_id
        try:
            handle = make(self.spec())
        except api.RemoteError as exc:
            self._close_viewer(viewer_key)
            self._say_error(exc)
            return None
        if handle is None:
            self._close_viewer(viewer_key)
            self._say(f"The results of job {record.job_id} are installed already; nothing to fetch.")
            return None
        viewer = self.viewers.pop(viewer_key, None)
        if viewer is not None:
            self.viewers[handle.job_id] = viewer
        self.handles[handle.job_id] = handle
        self.follow_tasks[handle.job_id] = spawn(self._follow(handle), on_error=self._say_error)
        self._say(f"Following job {handle.job_id}…")
        self._update_buttons()
        return handle

    async def _follow(self, handle: Any) -> None:
        api = _api()
        try:
            async for event in handle.events():
                if event.kind == "status" and event.data.get("message"):
                    self._say(f"Job {handle.job_id}: {event.data['message']}")
            outcome = await handle.result()
        except api.RemoteError as exc:
            if exc.code not in ("connection_lost", "coordinator_lost"):
                self._notify_end(handle, None, exc)
            self._say_error(exc)
            return
        finally:
            self.handles.pop(handle.job_id, None)
            self.follow_tasks.pop(handle.job_id, None)
            viewer = self.viewers.get(handle.job_id)
            if viewer is not None:
                viewer.set_message(f"Job {handle.job_id}: {handle.state.value}")
            await self._reload(False)
        if not outcome.detached:
            if handle.kind == "track":
                self._merge_predictions(handle, outcome)
            self._notify_end(handle, outcome, None)

    def _merge_predictions(self, handle: Any, outcome: Any) -> int:
        """Merge fetched predictions into the open project as the Track dialog does.

        Once only: a job whose results are installed is never fetched again
        (``fetch_job`` returns ``None``), so this runs once per job."""
        from . import packaging

        files = outcome.prediction_files or ([outcome.predictions] if outcome.predictions else [])
        labels = getattr(self.main_window, "labels", None)
        if not files or labels is None:
            return 0
        try:
            count = packaging.merge_prediction_files(labels, [Path(p) for p in files], {})
        except (ValueError, OSError) as exc:
            self._say(f"Job {handle.job_id}: the predictions were saved in {files[0]} but could not be added to this project: {exc}")
            return 0
        self.main_window._handle_learning_finished(count)
        self._say(f"Job {handle.job_id}: predictions on {count} frame(s) were added to the project.")
        self.merged[handle.job_id] = count
        return count

    def _notify_end(self, handle: Any, outcome: Any, error: Any) -> None:
        kind = "Remote training" if handle.kind == "train" else "Remote inference"
        if error is None:
            where = outcome.files[0] if outcome.files else self.project_dir
            text = f"Job {handle.job_id} finished; results installed:\n" + "\n".join(str(p) for p in outcome.files)
            self.last_notification = notify(self.main_window, f"{kind} finished", text, ok=True, action_text="Open results",
                                            action=lambda: self._open_folder(Path(where)))
        else:
            text = f"Job {handle.job_id} {error.code.removeprefix('job_')}: {error.message}\nShow log in Predict → Remote Jobs… has the worker's last lines."
            self.last_notification = notify(self.main_window, f"{kind} failed", text, ok=False, action_text="Show log",
                                            action=lambda: self.show_log(self.record(handle.job_id)))

    @staticmethod
    def _open_folder(path: Path) -> None:
        folder = path if path.is_dir() else path.parent
        QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(folder)))

    def _close_viewer(self, key: str) -> None:
        viewer = self.viewers.pop(key, None)
        if viewer is not None:
            viewer.close()

    # -- controls --------------------------------------------------------------------------
    def stop_early(self) -> None:
        record = self.selected()
        if record is not None:
            self._control(record.job_id, "stop")

    def cancel_job(self) -> None:
        record = self.selected()
        if record is not None:
            self._control(record.job_id, "cancel")

    def _control(self, job_id: str, command: str) -> asyncio.Future | None:
        """Stop early or cancel, following the job first when this panel does not yet."""
        handle = self.handles.get(job_id) or _api().live_handle(job_id)  # a dialog's job: the same handle
        if handle is None:
            record = self.record(job_id)
            handle = self.fetch_results(record) if record is not None else None
            if handle is None:
                return None
        self._say(f"Job {job_id}: {'stopping early' if command == 'stop' else 'cancelling'}…")
        return spawn(self._control_when_reachable(handle, command), on_error=self._say_error)

    @staticmethod
    async def _control_when_reachable(handle: Any, command: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONTROL_WAIT_S
        while loop.time() < deadline:  # a handle has no "controllable" event to wait on
            if handle.controllable or handle.done():
                break
            await asyncio.sleep(0.1)
        if handle.done():
            return
        await (handle.stop_early() if command == "stop" else handle.cancel())

    def show_log(self, record: Any = None) -> QtWidgets.QDialog | None:
        record = record or self.selected()
        if record is None:
            return None
        box = QtWidgets.QDialog(self)
        box.setWindowTitle(f"Log of remote job {record.job_id}")
        text = QtWidgets.QPlainTextEdit(jobs_view.log_text(record))
        text.setReadOnly(True)
        text.setLineWrapMode(QtWidgets.QPlainTextEdit.NoWrap)
        layout = QtWidgets.QVBoxLayout(box)
        layout.addWidget(text)
        box.text = text  # type: ignore[attr-defined]
        box.resize(800, 400)
        box.open()
        self.log_box = box
        return box

    def remove_job(self) -> asyncio.Future | None:
        record = self.selected()
        if record is None or record.job_id in self.handles:
            return None

        async def remove() -> None:
            await _api().forget_job(record.job_id, project_dir=self.project_dir)
            await self._reload(False)
            self._say(f"Job {record.job_id} removed from the list.")

        return spawn(remove(), on_error=self._say_error)

    def detach_all(self) -> None:
        """The window closes: every followed job keeps running remotely, to be fetched later."""
        for handle in list(self.handles.values()):
            spawn(handle.detach(), on_error=lambda exc: logger.warning("detach failed: %s", exc))
        for key in list(self.viewers):
            self._close_viewer(key)
        self.timer.stop()
        self.hide()


def show_jobs_panel(window: Any) -> RemoteJobsPanel:
    """Open (non-modally) this window's Remote Jobs panel, one per window."""
    panel = window._child_windows.get(PANEL_KEY)
    if panel is None:
        panel = RemoteJobsPanel(window)
        window._child_windows[PANEL_KEY] = panel
    panel.show()
    panel.raise_()
    return panel


def add_menu_action(window: Any, menu: Any, before: Any = None) -> Any:
    action = menu.addAction(MENU_TEXT)
    action.setToolTip("This project's remote jobs: watch, stop, fetch results, run again.")
    action.triggered.connect(lambda checked=False: show_jobs_panel(window))
    if before is not None:
        menu.removeAction(action)
        menu.insertAction(before, action)
    window._menu_actions[PANEL_KEY] = action
    return action


def window_closing(window: Any) -> None:
    panel = window._child_windows.get(PANEL_KEY)
    if panel is not None:
        panel.detach_all()
