"""Turn a failed remote job into one clear message box that says what to do next."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Advice:
    title: str
    text: str
    next_step: str


_ADVICE: dict[str, Advice] = {}


def _add(codes: tuple[str, ...], advice: Advice) -> None:
    for code in codes:
        _ADVICE[code] = advice


_add(
    ("no_worker", "no_workers", "no_match", "not_found", "unknown_peer"),
    Advice(
        "No worker available",
        "No worker in this room matches your request.",
        "Press Refresh to see which workers are online, lower the GPU memory requirement, "
        "or ask your lab admin to start a worker (sleap-rtc-service status).",
    ),
)
_add(
    ("busy", "worker_busy", "reserved"),
    Advice(
        "Worker busy",
        "The selected worker is already running another job.",
        "Pick another worker, tick Auto-select, or try again when it shows 'available'.",
    ),
)
_add(
    ("auth_failed", "bad_secret", "wrong_secret", "missing_secret", "unauthenticated", "worker_unauthenticated"),
    Advice(
        "Wrong room secret",
        "The worker refused the room secret.",
        "Check the room secret with whoever set up the worker, enter it again and resubmit.",
    ),
)
_add(
    ("no_room", "bad_token", "unauthorized", "unknown_room", "room_not_found", "expired", "token_expired"),
    Advice(
        "Cannot join the room",
        "The coordinator did not accept this room id and token.",
        "Check the room id and token (or paste a fresh session string); tokens can expire.",
    ),
)
_add(
    ("connection_lost", "disconnected", "peer_lost", "timeout", "ice_failed", "unreachable"),
    Advice(
        "Connection lost",
        "The connection to the worker or coordinator was lost.",
        "Check your network and that the coordinator URL is right, then submit again. "
        "A job that was already running keeps its results on the worker until you reconnect.",
    ),
)
_add(
    ("job_failed", "worker_failed", "rejected", "train_failed", "track_failed"),
    Advice(
        "Remote job failed",
        "The job ran on the worker but did not finish.",
        "Read the details below (the worker's last log lines), fix the configuration and resubmit.",
    ),
)
_add(
    ("choose_worker",),
    Advice(
        "Choose a worker",
        "Several workers are available.",
        "Select one in the list, or tick Auto-select to take the one with the most free GPU memory.",
    ),
)
_add(
    ("disk_full", "io_error"),
    Advice(
        "Out of disk space",
        "A file could not be written (disk full or not writable).",
        "Free space where the details say (your project folder or the worker). Results already made "
        "stay on the worker: fetch them again once there is room.",
    ),
)
_add(
    ("not_owner", "owner_required", "job_exists"),
    Advice(
        "Not your job",
        "This job belongs to another submission; only the computer and project that submitted it may follow, stop or fetch it.",
        "Open the project the job was submitted from, or submit the job again.",
    ),
)
_add(
    ("bad_package", "package_too_large", "no_package"),
    Advice(
        "The worker refused the job package",
        "The package contains something the worker will not run (a path outside the job, an option it does not allow, or too much data).",
        "Read the details below, correct the training settings and submit again.",
    ),
)
_add(
    ("rate_limited", "admin_required", "token_required", "replaced"),
    Advice(
        "The coordinator refused the request",
        "The coordinator turned this request away (too many attempts, or it needs an administrator's token).",
        "Wait a minute and try again; if it persists, ask your lab admin (the details say which).",
    ),
)
_add(
    ("result_timeout", "bad_result"),
    Advice(
        "Results did not arrive",
        "The results could not be fetched from the worker completely.",
        "They stay on the worker until they arrive: fetch them again.",
    ),
)
_add(
    ("cancelled",),
    Advice("Job cancelled", "The job was cancelled.", "Nothing was changed in your project."),
)

_GENERIC = Advice(
    "Remote job error",
    "The remote job could not be completed.",
    "Read the details below; if it persists, send them to your lab admin.",
)


def advice_for(code: str | None) -> Advice:
    return _ADVICE.get(code or "", _GENERIC)


def describe(exc: BaseException) -> tuple[str | None, str]:
    """``(code, message)`` for a ``RemoteError`` or any other exception."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if code is None and isinstance(exc, (ConnectionError, OSError)):
        code = "connection_lost"
    return code, message


def show_error(parent: Any, exc: BaseException):
    """Show a non-blocking message box for ``exc`` and return it (tests read it)."""
    from qtpy.QtWidgets import QMessageBox

    code, message = describe(exc)
    advice = advice_for(code)
    logger.warning("remote job error shown to user: code=%s message=%s", code, message)
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Warning)
    box.setWindowTitle(advice.title)
    box.setText(advice.text)
    box.setInformativeText(advice.next_step)
    box.setDetailedText(f"[{code}] {message}" if code else message)
    box.setStandardButtons(QMessageBox.Ok)
    box.setObjectName(f"sleap_rtc_error_{code or 'unknown'}")
    box.open()
    return box
