"""The "Send to the room's queue" section of Train/Track remotely (issue 17 item 1).

Unchecked, a job goes to the worker chosen in the list (as before). Checked, it goes
to the coordinator's queue with what a worker must offer (free GPU memory, GPU count,
labels whose values may be shell globs: ``gpu=a100*``), a priority and a number of
retries; the first matching worker that is free takes it, and the dialog shows the
queue position until then. The values become a ``client.api.QueueOptions``.
"""

from __future__ import annotations

from typing import Any

from qtpy import QtWidgets

from ...protocol.base import ProtocolError
from ...protocol.names import check_label


def parse_labels(text: str) -> dict[str, str]:
    """``gpu=a100*, site=lab1`` → ``{"gpu": "a100*", "site": "lab1"}``; a bad pair raises ``ValueError``."""
    labels: dict[str, str] = {}
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"label {part!r} needs the form key=value (e.g. gpu=a100*)")
        try:
            check_label(key.strip(), value.strip())
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        labels[key.strip()] = value.strip()
    return labels


class QueueOptionsBox(QtWidgets.QGroupBox):
    def __init__(self, parent: Any = None):
        super().__init__("Send to the room's queue (the first free matching worker takes it)", parent)
        self.setCheckable(True)
        self.setChecked(False)
        self.min_gpu_memory = QtWidgets.QSpinBox()
        self.min_gpu_memory.setRange(0, 1024 * 1024)
        self.min_gpu_memory.setSingleStep(1024)
        self.min_gpu_memory.setSuffix(" MB")
        self.min_gpu_memory.setSpecialValueText("any")
        self.gpu_count = QtWidgets.QSpinBox()
        self.gpu_count.setRange(0, 64)
        self.gpu_count.setSpecialValueText("any")
        self.labels = QtWidgets.QLineEdit()
        self.labels.setPlaceholderText("gpu=a100*, site=lab1")
        self.labels.setToolTip("Worker labels the job needs; values may use * and ? like file names.")
        self.priority = QtWidgets.QSpinBox()
        self.priority.setRange(-100, 100)
        self.priority.setToolTip("Higher runs first among waiting jobs.")
        self.retries = QtWidgets.QSpinBox()
        self.retries.setRange(0, 20)
        self.retries.setValue(3)
        self.retries.setToolTip("How often the job is handed to another worker when one is lost.")
        self.fields = QtWidgets.QWidget()  # folded away until queueing is chosen: the dialog stays short
        self.fields.setVisible(False)
        self.toggled.connect(self.fields.setVisible)
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(6, 2, 6, 2)
        outer.addWidget(self.fields)
        form = QtWidgets.QGridLayout(self.fields)
        form.setContentsMargins(0, 0, 0, 0)
        for column, (text, widget) in enumerate((("Min. GPU memory:", self.min_gpu_memory), ("GPUs:", self.gpu_count),
                                                 ("Priority:", self.priority), ("Retries:", self.retries))):
            form.addWidget(QtWidgets.QLabel(text), 0, 2 * column)
            form.addWidget(widget, 0, 2 * column + 1)
        form.addWidget(QtWidgets.QLabel("Labels:"), 1, 0)
        form.addWidget(self.labels, 1, 1, 1, 7)

    def problem(self) -> str | None:
        if not self.isChecked():
            return None
        try:
            parse_labels(self.labels.text())
        except ValueError as exc:
            return str(exc)
        return None

    def queue_options(self) -> Any:
        """``QueueOptions`` when queueing is on, else ``None`` (send to the chosen worker)."""
        if not self.isChecked():
            return None
        from sleap_rtc_plugin.client.api import QueueOptions

        return QueueOptions(min_gpu_memory_mb=self.min_gpu_memory.value(), gpu_count=self.gpu_count.value(),
                            labels=parse_labels(self.labels.text()), priority=self.priority.value(), max_retries=self.retries.value())
