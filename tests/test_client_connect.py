"""Choosing a worker: session string, room + token (interactive), auto-select, worker id, filters.

Two real workers advertise different GPU memory (NVML is faked: no NVIDIA GPU here);
a package the worker refuses straight away makes each submission quick while still
proving which worker the client connected to.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import sys
import zipfile

import pytest

from fake_nvml import gpus
from fixtures_e2e import coordinator, make_worker, project, room  # noqa: F401
from sleap_rtc_plugin.client import cli as client_cli
from sleap_rtc_plugin.client.api import ConnectionSpec, RemoteError, list_workers, submit_training
from sleap_rtc_plugin.config import load_settings
from sleap_rtc_plugin.protocol.session_string import SessionString


@pytest.fixture
def quick_package(tmp_path):
    """A package every worker refuses at once: the test only needs to see who answered."""
    path = tmp_path / "empty.slp.training_job.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("jobs.yaml", "training: []\ninference: []\n")
    return path


@pytest.fixture
async def two_gpu_workers(make_worker):  # noqa: F811
    small = await make_worker("small", gpus=gpus(8), labels={"site": "a", "gpu": "rtx"})
    big = await make_worker("big", gpus=gpus(24), labels={"site": "b", "gpu": "a100"})
    return small, big


async def answered_by(spec: ConnectionSpec, package, project) -> str:  # noqa: F811
    handle = submit_training(package, spec, project_dir=project)
    with pytest.raises(RemoteError) as info:
        await handle.result()
    assert info.value.code == "job_failed", info.value
    return handle.worker.name


def room_spec(coordinator, room, **kw) -> ConnectionSpec:  # noqa: F811
    room_id, token = room
    return ConnectionSpec(server_url=coordinator.url, room_id=room_id, token=token, ice_loopback=True, **kw)


async def test_list_workers_reports_gpus_and_sorts_by_free_memory(coordinator, room, two_gpu_workers):  # noqa: F811
    workers = await list_workers(room_spec(coordinator, room))
    assert [w.name for w in workers] == ["big", "small"]
    assert workers[0].gpu_memory_free_mb == 24 * 1024 and workers[0].gpu_name.startswith("NVIDIA A100")
    assert workers[1].labels == {"site": "a", "gpu": "rtx"}


async def test_auto_select_picks_most_free_gpu_memory(coordinator, room, two_gpu_workers, quick_package, project):  # noqa: F811
    assert await answered_by(room_spec(coordinator, room, auto_select=True), quick_package, project) == "big"


async def test_min_gpu_memory_and_labels_filter(coordinator, room, two_gpu_workers, quick_package, project):  # noqa: F811
    assert [w.name for w in await list_workers(room_spec(coordinator, room, min_gpu_memory_mb=16000))] == ["big"]
    assert [w.name for w in await list_workers(room_spec(coordinator, room, labels={"site": "a"}))] == ["small"]
    spec = room_spec(coordinator, room, auto_select=True, labels={"gpu": "rtx"})
    assert await answered_by(spec, quick_package, project) == "small"
    with pytest.raises(RemoteError) as info:
        await submit_training(quick_package, room_spec(coordinator, room, auto_select=True, min_gpu_memory_mb=64000), project_dir=project).result()
    assert info.value.code == "no_worker" and "matching your filters" in str(info.value)


async def test_worker_id_and_session_string_reach_that_worker(coordinator, room, two_gpu_workers, quick_package, project):  # noqa: F811
    small, big = two_gpu_workers
    assert await answered_by(room_spec(coordinator, room, worker_id=small.peer_id), quick_package, project) == "small"
    session = ConnectionSpec(session_string=big.session_string(), ice_loopback=True)
    assert await answered_by(session, quick_package, project) == "big"
    decoded = SessionString.decode(big.session_string())
    assert (decoded.room_id, decoded.peer_id, decoded.server_url) == (room[0], big.peer_id, coordinator.url)


async def test_several_workers_without_a_choice_asks_to_pick(coordinator, room, two_gpu_workers, quick_package, project):  # noqa: F811
    with pytest.raises(RemoteError) as info:
        await submit_training(quick_package, room_spec(coordinator, room), project_dir=project).result()
    assert info.value.code == "choose_worker"


async def test_interactive_selection_refreshes_then_picks(coordinator, room, two_gpu_workers, monkeypatch, capsys):  # noqa: F811
    answers = iter(["r", "2"])
    monkeypatch.setattr(builtins, "input", lambda prompt="": next(answers))
    spec = await client_cli._pick_interactively(room_spec(coordinator, room))
    assert spec.worker_id == two_gpu_workers[0].peer_id  # second row: "small" (less free memory)
    out = capsys.readouterr().out
    assert out.count(" 1. big") == 2 and "NVIDIA A100" in out


async def test_bad_credentials_and_unreachable_coordinator_are_clear(coordinator, room, quick_package, project, unused_tcp_port):  # noqa: F811
    room_id, _ = room
    bad = ConnectionSpec(server_url=coordinator.url, room_id=room_id, token="not-the-token", auto_select=True)
    with pytest.raises(RemoteError) as info:
        await submit_training(quick_package, bad, project_dir=project).result()
    assert "refused the room credentials" in str(info.value)
    gone = ConnectionSpec(server_url=f"ws://127.0.0.1:{unused_tcp_port}", room_id=room_id, token="x", auto_select=True)
    with pytest.raises(RemoteError) as info:
        await submit_training(quick_package, gone, project_dir=project).result()
    assert info.value.code == "unreachable" and "is `sleap-rtc server`" in str(info.value)


def test_spec_needs_a_room():
    with pytest.raises(RemoteError) as info:
        ConnectionSpec().resolved(load_settings(None, env={}))
    assert info.value.code == "no_room"


async def test_cli_client_train_with_room_and_auto_select(coordinator, room, two_gpu_workers, quick_package, project):  # noqa: F811
    room_id, token = room
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sleap_rtc_plugin", "client-train", "--server", coordinator.url, "--room-id", room_id,
        "--token", token, "--auto-select", "--pkg-path", str(quick_package), "--project-dir", str(project), "--no-progress",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 1, (out, err)
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("sleap-rtc: error: package rejected") and "no training and no inference" in last


def test_cli_help_reads_well():
    parser = argparse.ArgumentParser(prog="client-train")
    client_cli.add_train_arguments(parser)
    text = parser.format_help()
    for flag in ("--session-string", "--room-id", "--auto-select", "--worker-id", "--min-gpu-memory", "--label", "--room-secret",
                 "--controller-port", "--publish-port", "--attach"):
        assert flag in text
