"""The worker list of the "Remote worker" section: one row per worker, nothing stale.

The table only ever shows what the coordinator answered last for the fields on
screen: :meth:`WorkerTable.clear_workers` empties it when a refresh fails or the
connection fields change, so a user never picks a worker from another room.
"""

from __future__ import annotations

from typing import Any

from qtpy import QtCore, QtWidgets

COLUMNS = ("Worker", "GPU", "Free memory", "Status", "Host", "Labels", "Room secret")


def fmt_mb(free: Any, total: Any) -> str:
    """Free / total GPU memory as the worker's GPU reports it (NVML megabytes, 1024 to a GB)."""
    if free is None or (not free and not total):
        return "—"
    text = f"{free / 1024:.1f} GB" if free >= 1024 else f"{free} MB"
    if total:
        text += f" / {total / 1024:.0f} GB"
    return text


def secret_cell(worker: Any, have_secret: bool) -> str:
    """Whether this worker asks for the room secret, and whether the dialog has one."""
    if not getattr(worker, "needs_secret", True):
        return "not needed"
    return "needed (entered)" if have_secret else "needed — enter it"


class WorkerTable(QtWidgets.QTableWidget):
    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setStretchLastSection(True)
        self.setMinimumHeight(80)
        self.setMaximumHeight(130)
        self.workers: list[Any] = []

    def selected_worker_id(self) -> str | None:
        rows = self.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.item(rows[0].row(), 0)
        return None if item is None else item.data(QtCore.Qt.UserRole)

    def clear_workers(self) -> None:
        self.workers = []
        self.clearSelection()
        self.setRowCount(0)

    def fill(self, workers: list[Any], *, have_secret: bool) -> None:
        """Show ``workers``, keeping the selected worker selected when it is still there."""
        previous = self.selected_worker_id()
        self.workers = list(workers)
        self.setRowCount(len(self.workers))
        for row, w in enumerate(self.workers):
            labels = ", ".join(f"{k}={v}" for k, v in sorted((getattr(w, "labels", None) or {}).items()))
            gpu = getattr(w, "gpu_name", None) or getattr(w, "accelerator", None) or "CPU"
            cells = (
                getattr(w, "name", None) or w.peer_id,
                gpu,
                fmt_mb(getattr(w, "gpu_memory_free_mb", None), getattr(w, "gpu_memory_total_mb", None)),
                getattr(w, "status", "") or "",
                getattr(w, "hostname", "") or "",
                labels,
                secret_cell(w, have_secret),
            )
            for col, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(str(text))
                if col == 0:
                    item.setData(QtCore.Qt.UserRole, w.peer_id)
                    item.setToolTip(w.peer_id)
                self.setItem(row, col, item)
            if w.peer_id == previous or (previous is None and row == 0 and getattr(w, "status", "") == "available"):
                self.selectRow(row)
        self.resizeColumnsToContents()
