"""Every error code the client can meet has its own title and next step, never the
generic "Remote job error … send them to your lab admin" box (issue 20, item 3).

The codes are read from the package's source, so a code added later without advice
fails here instead of reaching a user as the generic box.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import sleap_rtc_plugin
from sleap_rtc_plugin.gui.dialogs.errors import _GENERIC, advice_for, describe, gui_words

PACKAGE = Path(sleap_rtc_plugin.__file__).parent
#: Where a stable error code is born: typed errors and refusals, ``code=`` keywords, code constants.
_PATTERNS = (
    re.compile(r"\b(?:RemoteError|ProtocolError|CoordinatorError|AuthError|TransferError|PackageError|JobFailedError|RelayRejected)\(\s*\"([a-z_]+)\""),
    re.compile(r"\bcode=\"([a-z_]+)\""),
    re.compile(r"^[A-Z_]+(?:: str)?\s*=\s*\"([a-z_]+)\"\s*$", re.M),
)
#: Not error codes although they match the patterns (names, modes, states).
_NOT_CODES = {"direct", "shared", "cache", "hashend", "datachannel", "results_ready", "int", "float", "switch", "sleap_rtc", "train_remotely",
              "track_remotely", "inputs", "embedded", "sat_", "swt_"}
#: Codes built at run time: ``job_<state>`` for a job that ended badly, ``ConnectError.stage``.
_BUILT = {"job_failed", "job_cancelled", "answer", "ice", "channel", "connect"}


def client_codes() -> set[str]:
    codes = set(_BUILT)
    for path in PACKAGE.rglob("*.py"):
        if "gui" in path.relative_to(PACKAGE).parts[:1] or path.parts[-2] == "service":
            continue
        text = path.read_text()
        for pattern in _PATTERNS:
            codes.update(pattern.findall(text))
    return codes - _NOT_CODES


def test_the_scan_finds_the_codes_users_met():
    codes = client_codes()
    for seen in ("bad_session_string", "job_cancelled", "missing_secret", "unreachable", "worker_lost", "worker_stopped",
                 "all_busy", "disk_full", "bad_package", "not_owner", "busy", "no_worker"):
        assert seen in codes, seen
    assert len(codes) > 60


@pytest.mark.parametrize("code", sorted(client_codes()))
def test_every_code_has_its_own_title_and_next_step(code):
    advice = advice_for(code)
    assert advice is not _GENERIC, f"code {code!r} would show the generic box"
    assert advice.title != _GENERIC.title and advice.text and advice.next_step
    assert "--" not in advice.next_step and "--" not in advice.text  # no CLI flags in the GUI


@pytest.mark.parametrize(("code", "title"), [
    ("bad_session_string", "Session string not recognised"),
    ("missing_secret", "No room secret entered"),
    ("bad_secret", "Wrong room secret"),
    ("unreachable", "Cannot reach the coordinator"),
    ("worker_lost", "Worker lost"),
    ("worker_stopped", "The worker was stopped"),
    ("all_busy", "Every worker is busy"),
    ("cancelled", "Job cancelled"),
])
def test_the_titles_users_asked_for(code, title):
    assert advice_for(code).title == title


def test_no_secret_fix_names_the_gui_not_cli_flags():
    advice = advice_for("missing_secret")
    assert "Room secret field" in advice.next_step or "session string" in advice.next_step
    assert "--" not in advice.next_step


def test_cli_hints_are_dropped_from_gui_details():
    from sleap_rtc_plugin.client.errors import RemoteError

    code, message = describe(RemoteError("disk_full", "no space for job j in /p; free some space, then fetch them with --attach j --worker-id w"))
    assert code == "disk_full" and message == "no space for job j in /p" and "--" not in message
    assert gui_words("plain words only") == "plain words only"
    assert describe(ConnectionRefusedError("refused"))[0] == "unreachable"


def test_a_whole_pasted_banner_line_is_a_session_string():
    from sleap_rtc_plugin.protocol.base import ProtocolError
    from sleap_rtc_plugin.protocol.session_string import SessionString

    token = SessionString("room1", "tok", "peer1", "ws://h:1", "sec").encode()
    for pasted in (token, f"  Session string: {token}  ", f"[worker] session: {token} (share it with your lab)", f"'{token}'"):
        assert SessionString.decode(pasted) == SessionString("room1", "tok", "peer1", "ws://h:1", "sec")
    with pytest.raises(ProtocolError) as info:
        SessionString.decode(f"Session string: {token[:-9]}")  # cut short
    assert info.value.code == "bad_session_string"
    with pytest.raises(ProtocolError):
        SessionString.decode("room1 tok")
