"""The Slurm executor and capacity probe against a real single-node cluster, with small
commands instead of sleap-nn: what the cluster advertises, a pending job's state and queue
position, a job's own non-zero exit, and scancel of a job that ignores TERM."""

from __future__ import annotations

import asyncio
import sys

import pytest

from fixtures_slurm import GPU_TYPE, GPUS, slurm_cluster  # noqa: F401
from sleap_rtc_plugin.worker.jobproc import ProcessFailed
from sleap_rtc_plugin.worker.slurm.capacity import slurm_capabilities
from sleap_rtc_plugin.worker.slurm.execution import SlurmExecutor
from sleap_rtc_plugin.worker.slurm.options import SlurmOptions

pytestmark = pytest.mark.timeout(300)


def opts_for(cluster, **kw) -> SlurmOptions:
    kw.setdefault("gres", "gpu:{gpus}")
    return SlurmOptions(cpus=1, poll_interval=0.3, time_limit="5", command_env=cluster.env, gpu_memory_mb={GPU_TYPE: 8192}, **kw)


def python_argv(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def until_state(cluster, state: str | None, timeout: float = 60.0) -> None:
    """Until every listed job is in ``state`` (None: until none is listed)."""
    for _ in range(int(timeout / 0.2)):
        states = cluster.run("squeue", "-h", "-o", "%T").split()
        if (not states) if state is None else (states and set(states) == {state}):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"slurm jobs still {states}")


async def run_command(executor: SlurmExecutor, code: str, key: str, tmp_path):
    lines: list[tuple[str, str]] = []
    execution = await executor.start(python_argv(code), cwd=tmp_path, env={}, key=key, on_message=lambda raw: None,
                                     on_line=lambda raw, stream: lines.append((stream, raw.decode())))
    return execution, lines


async def test_capacity_comes_from_sinfo(slurm_cluster):  # noqa: F811
    caps = await asyncio.to_thread(slurm_capabilities, opts_for(slurm_cluster))
    assert caps["executor"] == "slurm" and caps["accelerator"] == "cuda"
    assert [g["name"] for g in caps["gpus"]] == [GPU_TYPE] * GPUS and caps["gpus"][0]["memory_free_mb"] == 8192
    (part,) = caps["slurm"]["partitions"]
    assert part["name"] == "debug" and part["gpus"] == part["free_gpus"] == f"{GPU_TYPE}:{GPUS}"

    blocker = slurm_cluster.run("sbatch", "--parsable", "--gres=gpu:1", "--wrap", "sleep 60").strip()
    try:
        for _ in range(100):
            caps = await asyncio.to_thread(slurm_capabilities, opts_for(slurm_cluster))
            if len(caps["gpus"]) == GPUS - 1:
                break
            await asyncio.sleep(0.2)
        assert caps["slurm"]["partitions"][0]["free_gpus"] == f"{GPU_TYPE}:{GPUS - 1}" and len(caps["gpus"]) == GPUS - 1
    finally:
        slurm_cluster.run("scancel", blocker)


async def test_pending_reason_and_position_then_the_jobs_own_exit(slurm_cluster, tmp_path):  # noqa: F811
    await until_state(slurm_cluster, None)  # an earlier test's job may still be completing
    blocker = slurm_cluster.run("sbatch", "--parsable", f"--gres=gpu:{GPUS}", "--wrap", "sleep 120").strip()
    await until_state(slurm_cluster, "RUNNING")  # it holds every GPU
    statuses: list[dict] = []
    executor = SlurmExecutor("j1", tmp_path / "job", opts_for(slurm_cluster), gpus=GPUS, on_status=statuses.append)
    try:
        execution, lines = await run_command(executor, "import sys; print('hello from the node'); sys.exit(7)", "run", tmp_path)
        waiter = asyncio.ensure_future(execution.wait())  # it polls Slurm and reports the state
        for _ in range(100):
            if any(s["state"] == "pending" and s.get("reason") == "Resources" for s in statuses):
                break
            await asyncio.sleep(0.2)
        pending = next((s for s in statuses if s["state"] == "pending" and s.get("reason") == "Resources"), statuses)
        assert isinstance(pending, dict), (pending, slurm_cluster.run("squeue"))
        assert pending["message"] == "pending: Resources, position 1" and pending["slurm_job_id"] == execution.slurm_id
        assert execution.running
    finally:
        slurm_cluster.run("scancel", blocker)
    rc = await asyncio.wait_for(waiter, 120)
    assert rc == 7  # sleap-nn's own exit status: the job's error, not the cluster's
    assert ("stdout", "hello from the node") in lines
    assert any(s["state"] == "running" for s in statuses)


async def test_kill_ends_a_job_that_ignores_term(slurm_cluster, tmp_path):  # noqa: F811
    executor = SlurmExecutor("j2", tmp_path / "job", opts_for(slurm_cluster, gres=""))
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    execution, lines = await run_command(executor, code, "run", tmp_path)
    waiter = asyncio.ensure_future(execution.wait())
    for _ in range(300):
        if ("stdout", "up") in lines:
            break
        await asyncio.sleep(0.1)
    assert ("stdout", "up") in lines
    await execution.kill(grace=2.0)
    await asyncio.wait_for(waiter, 30)
    assert not execution.running
    assert execution.slurm_id not in slurm_cluster.jobs()


async def test_a_job_cancelled_on_the_cluster_is_its_own_failure(slurm_cluster, tmp_path):  # noqa: F811
    executor = SlurmExecutor("j3", tmp_path / "job", opts_for(slurm_cluster, gres=""))
    execution, lines = await run_command(executor, "import time; print('up', flush=True); time.sleep(600)", "run", tmp_path)
    waiter = asyncio.ensure_future(execution.wait())
    for _ in range(300):
        if ("stdout", "up") in lines:
            break
        await asyncio.sleep(0.1)
    slurm_cluster.run("scancel", execution.slurm_id)
    with pytest.raises(ProcessFailed, match="cancelled on the cluster") as info:
        await asyncio.wait_for(waiter, 60)
    assert not info.value.infra
