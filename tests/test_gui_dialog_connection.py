"""The "Remote worker" section in the real SLEAP window: session strings, remembering,
height, and a worker table that never shows stale rows (issue 20 items 4, 5, 8)."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from fixtures_gui import main_window, project_path, qapp_module, run_qasync, wait_until  # noqa: F401

pytestmark = pytest.mark.gui

GPU_METADATA = {
    "name": "gpu-box-1",
    "hostname": "lab-gpu-01",
    "accelerator": "cuda",
    "gpus": [{"name": "NVIDIA A100-SXM4-40GB", "memory_free_mb": 39000, "memory_total_mb": 40960}],
    "labels": {},
}


def _session(server_url, secret=None, room="room-a", token="token-a", peer="worker-a"):
    from sleap_rtc_plugin.protocol.session_string import SessionString

    return SessionString(room, token, peer, server_url, secret).encode()


def _fresh(window, key):
    """A new dialog (not the window's cached one): what a new SLEAP session would build."""
    from sleap_rtc_plugin.gui.manager import host_of

    return host_of(window).make_dialog(key, window)


async def _wait_for(predicate, timeout: float = 30.0):
    await wait_until(predicate, timeout)


def test_session_strings_coordinator_replaces_the_url_until_the_user_edits_it(main_window):
    dialog = _fresh(main_window, "train_remotely")
    panel = dialog.panel
    panel.server_url.setText("ws://127.0.0.1:8765")
    panel.session_string.setText(_session("ws://lab-coordinator.example:9000"))
    assert panel.server_url.text() == "ws://lab-coordinator.example:9000"
    assert panel.spec().resolved().server_url == "ws://lab-coordinator.example:9000"
    # the user changes the URL after pasting: their URL is used
    panel.server_url.setText("ws://other-coordinator.example:9001")
    assert panel.spec().resolved().server_url == "ws://other-coordinator.example:9001"
    # a new paste names its own coordinator again
    panel.session_string.setText(_session("ws://third.example:9002", room="room-b"))
    assert panel.server_url.text() == "ws://third.example:9002"
    # a string that names no coordinator leaves the field alone
    panel.session_string.setText(_session(None, room="room-c"))
    assert panel.server_url.text() == "ws://third.example:9002"
    dialog.deleteLater()


def test_remembered_session_string_fills_both_dialogs_secret_in_the_credential_store(main_window):
    from sleap_rtc_plugin.client import credentials
    from sleap_rtc_plugin.gui import settings

    settings._last_used = None  # as if SLEAP had just started
    train = _fresh(main_window, "train_remotely")
    train.panel.room_id.setText("room-typed-earlier")  # a session string's own room wins over this
    secret = "s3cret-value-for-room-r"
    pasted = _session("ws://lab.example:9100", secret=secret, room="room-r", token="tok-r")
    train.panel.session_string.setText(pasted)
    train.panel.remember.setChecked(True)
    train.panel.persist()

    # this SLEAP session: the Track dialog shares it at once
    track = _fresh(main_window, "track_remotely")
    assert track.panel.session_string.text() == pasted
    assert track.panel.server_url.text() == "ws://lab.example:9100"

    # next SLEAP session: only what was kept on disk
    settings._last_used = None
    path = credentials._path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    import json

    from sleap_rtc_plugin.protocol.session_string import SessionString

    kept_string = SessionString.decode(json.loads(path.read_text())["session_string"])
    assert (kept_string.token, kept_string.secret) == ("tok-r", None)
    assert secret not in path.read_text()
    assert credentials.recall_secret("room-r") == secret
    from qtpy.QtCore import QSettings

    kept = QSettings("sleap-rtc", "gui")
    assert all("tok-r" not in str(kept.value(k)) and secret not in str(kept.value(k)) for k in kept.allKeys())
    for key in ("train_remotely", "track_remotely"):
        dialog = _fresh(main_window, key)
        assert dialog.panel.session_string.text().startswith("sleap-session:")
        assert dialog.panel.room_secret.text() == secret
        assert dialog.panel.server_url.text() == "ws://lab.example:9100"
        spec = dialog.panel.spec().resolved()
        assert (spec.room_id, spec.token, spec.room_secret) == ("room-r", "tok-r", secret)
        dialog.deleteLater()

    # unticking "Remember" forgets the connection on disk
    track.panel.remember.setChecked(False)
    track.panel.persist()
    settings._last_used = None
    assert not path.exists()
    assert _fresh(main_window, "train_remotely").panel.session_string.text() == ""
    for d in (train, track):
        d.deleteLater()


def test_dialogs_fit_sleaps_own_dialog_height(main_window, qtbot):
    from sleap_rtc_plugin.gui.plugin import show_dialog

    for key in ("train_remotely", "track_remotely"):
        dialog = show_dialog(main_window, key)
        qtbot.waitUntil(dialog.isVisible)
        assert dialog.sizeHint().height() <= 900, (key, dialog.sizeHint())
        assert dialog.height() <= 900, (key, dialog.height())
        dialog.close()


def test_worker_table_clears_on_failure_and_field_change_and_refreshes_itself(main_window, qtbot, tmp_path):
    from sleap_rtc_plugin.coordinator import CoordinatorClient, CoordinatorServer
    from sleap_rtc_plugin.gui.plugin import show_dialog

    dialog = show_dialog(main_window, "train_remotely")
    panel = dialog.panel
    panel.auto_timer.setInterval(300)

    async def scenario():
        server = CoordinatorServer("127.0.0.1", 0, tmp_path / "coord.sqlite3")
        await server.start()
        peers = []
        try:
            room_id, token, _ = await server.create_room()
            panel.session_string.setText("")
            panel.room_secret.setText("")
            panel.server_url.setText(server.url)
            panel.room_id.setText(room_id)
            panel.token.setText(token)
            for meta in (GPU_METADATA, {**GPU_METADATA, "name": "open-box", "needs_secret": False}):
                peer = CoordinatorClient(server.url, room_id=room_id, token=token, role="worker", metadata=meta)
                await peer.start()
                peers.append(peer)
            # no Refresh pressed: the field change and the timer list them
            await _wait_for(lambda: panel.table.rowCount() == 2)
            cells = {panel.table.item(r, 0).text(): panel.table.item(r, 6).text() for r in range(2)}
            assert cells == {"gpu-box-1": "needed — enter it", "open-box": "not needed"}
            assert not panel.fields.isVisible(), "the fields fold away once workers are listed"
            assert room_id in panel.summary.text()
            assert dialog.grab().save(str(tmp_path / "folded.png"))  # renders with the fields folded

            # a third worker appears while the dialog is open: the timer finds it
            peer = CoordinatorClient(server.url, room_id=room_id, token=token, role="worker", metadata={**GPU_METADATA, "name": "late-box"})
            await peer.start()
            peers.append(peer)
            await _wait_for(lambda: panel.table.rowCount() == 3)

            # another room typed in: the old rows go at once
            panel.room_id.setText("some-other-room")
            assert panel.table.rowCount() == 0 and panel.workers == []
            panel.room_id.setText(room_id)
            await _wait_for(lambda: panel.table.rowCount() == 3)

            # the coordinator goes away: a timed refresh fails, the table empties, no box pops up
            panel.last_error_box = None
            await server.stop()
            await _wait_for(lambda: panel.table.rowCount() == 0, timeout=30)
            assert panel.status.text().startswith("Could not list workers")
            assert panel.last_error_box is None
        finally:
            for peer in peers:
                await peer.close()
            await server.stop()

    run_qasync(scenario())
    panel.auto_timer.stop()
    dialog.close()
