"""Turn a failed remote job into one clear message box that says what to do next."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from ...client.job_fate import WORKER_LOST, WORKER_STOPPED

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
    ("no_worker", "no_workers", "no_match", "not_found", "unknown_peer", "unknown_worker", "not_registered"),
    Advice(
        "No worker available",
        "No worker in this room matches your request.",
        "Press Refresh to see which workers are online, lower the GPU memory requirement, "
        "or ask your lab admin to start a worker (sleap-rtc-service status).",
    ),
)
_add(
    ("all_busy",),
    Advice(
        "Every worker is busy",
        "The workers in this room that match your request are all running other jobs.",
        "Wait until one shows 'available' in the list (Refresh), then submit again; a job sent through the "
        "coordinator's queue waits for the next free worker on its own.",
    ),
)
_add(
    ("busy", "worker_busy", "reserved", "not_reserved", "worker_draining"),
    Advice(
        "Worker busy",
        "The selected worker is already running another job (or is finishing before it stops).",
        "Pick another worker, tick Auto-select, or try again when it shows 'available'.",
    ),
)
_add(
    ("ambiguous_worker",),
    Advice(
        "Which worker?",
        "More than one worker matches the worker you named.",
        "Select the worker in the list instead of typing its name.",
    ),
)
_add(
    ("bad_secret", "wrong_secret", "auth_failed", "unauthenticated"),
    Advice(
        "Wrong room secret",
        "The worker refused the room secret.",
        "Check the room secret with whoever set up the worker, enter it again and resubmit.",
    ),
)
_add(
    ("missing_secret",),
    Advice(
        "No room secret entered",
        "This worker only accepts clients that know the room's secret, and none was given.",
        "Paste the whole session string the worker printed (it carries the secret), or type the room secret "
        "into the Room secret field of the connection panel, then submit again.",
    ),
)
_add(
    ("worker_unauthenticated", "worker_auth_failed", "worker_failed", "protocol"),
    Advice(
        "The worker could not prove who it is",
        "The worker did not pass the room-secret check, so nothing was sent to it (a misconfigured worker, or a "
        "connection relayed by someone else).",
        "Tell your lab admin which worker this was (see the details); pick another worker meanwhile.",
    ),
)
_add(
    ("no_room", "bad_token", "unauthorized", "unknown_room", "room_not_found", "no_token", "token_revoked"),
    Advice(
        "Cannot join the room",
        "The coordinator did not accept this room id and token.",
        "Check the room id and token (or paste a fresh session string); tokens can expire.",
    ),
)
_add(
    ("room_expired", "expired", "token_expired"),
    Advice(
        "The room has expired",
        "The coordinator no longer knows this room.",
        "Ask whoever runs the worker for a fresh session string and paste it in.",
    ),
)
_add(
    ("bad_session_string",),
    Advice(
        "Session string not recognised",
        "What is in the Session string field is not a whole session string (it is cut short or was changed).",
        "Copy the line with 'sleap-session:' from the worker's output again and paste it in; the whole line is fine.",
    ),
)
_add(
    ("unreachable",),
    Advice(
        "Cannot reach the coordinator",
        "Nothing answered at the coordinator URL.",
        "Check the Coordinator URL (the session string names it) and your network, and that the coordinator or "
        "the worker with its embedded coordinator is running; then submit again.",
    ),
)
_add(
    ("coordinator_lost", "disconnected", "closed", "timeout"),
    Advice(
        "Lost the coordinator",
        "The connection to the coordinator dropped.",
        "Check your network and submit again. A job that was already running keeps its results on the worker; "
        "reopen this dialog or the Remote Jobs panel to fetch them.",
    ),
)
_add(
    ("connection_lost", "peer_lost", "not_connected"),
    Advice(
        "Connection lost",
        "The connection to the worker was lost.",
        "The details say whether the worker is still online; if it is, the job keeps running there and its "
        "results wait for you: reopen this dialog or the Remote Jobs panel to fetch them.",
    ),
)
_add(
    ("answer", "ice", "ice_failed", "channel", "connect", "sdp", "direct_failed"),
    Advice(
        "Cannot connect to the worker",
        "The worker was found but no direct connection to it could be set up.",
        "Both computers need a network path to each other (or a TURN relay): ask your lab admin to check the "
        "coordinator's TURN settings, then submit again.",
    ),
)
_add(
    (WORKER_LOST,),
    Advice(
        "Worker lost",
        "The worker went offline while running your job (it was killed, crashed or lost its network), and its "
        "training or tracking stopped with it.",
        "The details say what happens to the job: a queued job goes back to the queue by itself; a job sent "
        "straight to the worker must be submitted again once a worker is online.",
    ),
)
_add(
    (WORKER_STOPPED,),
    Advice(
        "The worker was stopped",
        "The worker was shut down or restarted while running your job, and cancelled the job on its way out.",
        "Nothing was returned. Submit the job again when the worker is back (Refresh shows it), or pick another worker.",
    ),
)
_add(
    ("job_failed", "rejected", "train_failed", "track_failed"),
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
    ("unknown_job", "stale_attempt", "not_assigned"),
    Advice(
        "The worker no longer has this job",
        "The worker does not hold this job any more (it finished and was fetched, was cancelled, or was handed to another worker).",
        "Open the Remote Jobs panel to see where the job is now, or submit it again.",
    ),
)
_add(
    ("bad_package", "package_too_large", "no_package", "package_mismatch", "bad_path", "bad_name"),
    Advice(
        "The worker refused the job package",
        "The package contains something the worker will not run (a path outside the job, an option it does not allow, "
        "or too much data), or it did not arrive whole.",
        "Read the details below, correct the training settings and submit again.",
    ),
)
_add(
    ("rate_limited", "admin_required", "token_required", "bad_admin_token", "replaced", "queue_full"),
    Advice(
        "The coordinator refused the request",
        "The coordinator turned this request away (too many attempts or jobs, or it needs an administrator's token).",
        "Wait a minute and try again; if it persists, ask your lab admin (the details say which).",
    ),
)
_add(
    ("result_timeout", "bad_result", "result_mismatch"),
    Advice(
        "Results did not arrive",
        "The results could not be fetched from the worker completely.",
        "They stay on the worker until they arrive: reopen this dialog or the Remote Jobs panel to fetch them again.",
    ),
)
_add(
    ("malformed", "bad_version", "bad_value", "wrong_type", "missing_field", "unexpected_type", "unknown_type", "oversize", "bad_frame",
     "bad_state", "internal", "not_client", "not_worker", "already_registered", "token_exists"),
    Advice(
        "Versions do not match",
        "The coordinator or the worker did not understand a message from this computer (or failed handling it).",
        "Make sure sleap-rtc-plugin here, on the worker and on the coordinator are the same version; if they are, "
        "send the details to your lab admin.",
    ),
)
_add(
    ("infrastructure", "detached"),
    Advice(
        "The worker had a problem",
        "The job stopped because of a problem on the worker (not in your settings).",
        "Submit the job again, or pick another worker; if it happens again, send the details to your lab admin.",
    ),
)
_add(
    ("not_accepting", "too_large", "hash_mismatch"),
    Advice(
        "A file transfer failed",
        "A file did not arrive whole, or the other side would not take it (too large, or not expected now).",
        "Submit again; if a file is too large for the worker, train on fewer frames or ask your lab admin to raise its limit.",
    ),
)
_add(
    ("peer_id_in_use",),
    Advice(
        "This computer is already connected",
        "The coordinator already has a connection with this client's id.",
        "Wait a few seconds for the old connection to time out, then submit again.",
    ),
)
_add(
    ("bad_job_record",),
    Advice(
        "The project's job list is damaged",
        "An entry in the project's list of remote jobs could not be read.",
        "The details name the job; that entry is skipped. Your models and labels are not affected.",
    ),
)
_add(
    ("cancelled",),
    Advice("Job cancelled", "The job was cancelled as you asked.", "Nothing was changed in your project."),
)
_add(
    ("job_cancelled",),
    Advice(
        "Job cancelled elsewhere",
        "The job was cancelled outside this window (from the Remote Jobs panel, another client of this project, or by "
        "your lab admin).",
        "Nothing was changed in your project; submit it again if it should run.",
    ),
)

_GENERIC = Advice(
    "Remote job error",
    "The remote job could not be completed.",
    "Read the details below; if it persists, send them to your lab admin.",
)


def advice_for(code: str | None) -> Advice:
    return _ADVICE.get(code or "", _GENERIC)


#: The user's own Cancel: a status line, never an error box.
USER_CANCELLED = frozenset({"cancelled"})
_CLI_CLAUSE = re.compile(r"--[a-z][a-z-]+|`sleap-rtc [^`]*`|SLEAP_RTC_[A-Z_<>]+")


def is_user_cancel(exc: BaseException) -> bool:
    return getattr(exc, "code", None) in USER_CANCELLED


def gui_words(message: str) -> str:
    """``message`` without the clauses that tell a CLI user which flags to type.

    Client errors are shared with the CLI, so they end in hints like "fetch them with
    --attach JOB"; in the GUI those are noise at best. Clauses are split on ``;``."""
    kept = [part for part in message.split("; ") if not _CLI_CLAUSE.search(part)]
    return "; ".join(kept) if kept else message


def describe(exc: BaseException) -> tuple[str | None, str]:
    """``(code, message)`` for a ``RemoteError`` or any other exception, in GUI words."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if code is None and isinstance(exc, ConnectionRefusedError):
        code = "unreachable"
    elif code is None and isinstance(exc, (ConnectionError, OSError)):
        code = "connection_lost"
    return code, gui_words(message)


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
