"""A worker keeps its identity across restarts, so a session string pasted once keeps working."""

from __future__ import annotations

import json

import pytest

from fixtures_data import sample_labels, sample_root  # noqa: F401
from fixtures_e2e import WorkerProcess
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import ConnectionSpec, submit_training
from sleap_rtc_plugin.protocol.session_string import SessionString
from sleap_rtc_plugin.worker import identity

pytestmark = pytest.mark.slow


async def test_a_session_string_still_runs_a_job_after_the_worker_is_killed_and_restarted(sample_labels, tmp_path):  # noqa: F811
    data = tmp_path / "worker-data"
    first = WorkerProcess(data)
    pasted = first.session_string
    first.proc.kill()  # as hard as it gets: no clean shutdown, the OS drops its lock
    first.proc.wait()

    second = WorkerProcess(data)
    try:
        assert second.session_string == pasted  # same coordinator URL, room, token, worker id and secret
        with pytest.raises(RuntimeError, match=r"is in use by another worker \(pid \d+\); give each worker its own --data-dir"):
            WorkerProcess(data)  # a second worker on the same data dir is refused, and the first keeps running
        assert second.proc.poll() is None

        package = sample_data.make_training_package(sample_labels, tmp_path / "pkg", epochs=1)
        handle = submit_training(package, ConnectionSpec(session_string=pasted, ice_loopback=True), project_dir=tmp_path / "project")
        outcome = await handle.result()
        assert (outcome.model_dirs[0] / "best.ckpt").is_file()
    finally:
        second.stop()

    session = SessionString.decode(pasted)
    for name in (identity.IDENTITY_FILE, identity.SECRET_FILE):
        assert (data / name).stat().st_mode & 0o777 == 0o600
    assert data.stat().st_mode & 0o777 == 0o700
    kept = json.loads((data / identity.IDENTITY_FILE).read_text())
    assert kept["room_id"] == session.room_id and "secret" not in kept
    assert session.token.encode() not in (data / "coordinator.sqlite3").read_bytes()  # the coordinator keeps only a hash


def test_an_unreadable_identity_starts_afresh_and_a_foreign_one_is_not_used(tmp_path):
    (tmp_path / identity.IDENTITY_FILE).write_text("{not json")
    assert identity.load(tmp_path) == identity.Identity()
    kept = identity.Identity(peer_id="w-1", server_url="ws://a:1", room_id="r", token="t", secret="s")
    identity.save(tmp_path, kept)
    again = identity.load(tmp_path)
    assert again == kept and again.same_place("ws://a:1", "r")
    assert not again.same_place("ws://b:1") and not again.same_place("ws://a:1", "other-room")
    assert "\"s\"" not in (tmp_path / identity.IDENTITY_FILE).read_text()


def test_two_locks_on_one_data_dir(tmp_path):
    from sleap_rtc_plugin.errors import UserError

    a, b = identity.DataDirLock(tmp_path), identity.DataDirLock(tmp_path)
    a.acquire()
    with pytest.raises(UserError, match="in use by another worker"):
        b.acquire()
    a.release()
    b.acquire()  # free again once the holder lets go
    b.release()
