"""Jobs through the Slurm executor on a real single-node Slurm cluster (tests/fixtures_slurm.py):
a real worker, a real client, real sleap-nn in real sbatch jobs.

Train and get the model back (progress and Slurm's own state reach the client), Stop Early
reaches the trainer inside the Slurm job, Cancel ends the Slurm job with nothing left behind.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from fixtures_e2e import collect, coordinator, first_epoch, make_worker, project, room, spec_for  # noqa: F401
from fixtures_data import sample_labels, sample_root, training_package  # noqa: F401
from fixtures_slurm import slurm_cluster  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import RemoteError, submit_training
from sleap_rtc_plugin.worker.slurm.execution import SlurmExecutorFactory
from sleap_rtc_plugin.worker.slurm.options import SlurmOptions

pytestmark = pytest.mark.slow


def slurm_options(cluster, staging: Path, **kw) -> SlurmOptions:
    return SlurmOptions(staging_dir=staging, gres="", cpus=1, poll_interval=0.3, time_limit="10", command_env=cluster.env, **kw)


@pytest.fixture
async def slurm_worker(make_worker, slurm_cluster, tmp_path):  # noqa: F811
    staging = tmp_path / "shared-staging"
    return await make_worker("hpc", executor_factory=SlurmExecutorFactory(slurm_options(slurm_cluster, staging)))


def sleap_nn_processes(marker: str) -> list[int]:
    """Pids of any process whose command line mentions ``marker`` (a job's staging path)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


async def until_no_jobs(cluster, timeout: float = 30.0) -> list[str]:
    for _ in range(int(timeout / 0.2)):
        jobs = await asyncio.to_thread(cluster.jobs)
        if not jobs:
            return []
        await asyncio.sleep(0.2)
    return jobs


async def test_train_through_slurm_streams_progress_and_returns_the_model(slurm_worker, slurm_cluster, project, training_package):  # noqa: F811
    handle = submit_training(training_package, spec_for(slurm_worker), project_dir=project)
    events = await collect(handle)
    outcome = await handle.result()

    run_dir = outcome.model_dirs[0]
    assert (run_dir / "best.ckpt").stat().st_size > 0
    kinds = [e.data.get("event") for e in events if e.kind == "progress"]
    assert kinds.count("epoch_end") == 2 and "train_begin" in kinds and "train_end" in kinds
    scheduler = [e.data for e in events if e.kind == "progress" and e.data.get("kind") == "scheduler"]
    assert scheduler and scheduler[0]["scheduler"] == "slurm" and scheduler[0]["slurm_job_id"].isdigit()
    assert any(s["state"] == "running" for s in scheduler)
    assert await until_no_jobs(slurm_cluster) == []
    assert slurm_worker.state.status.value == "available"


async def test_stop_early_reaches_the_trainer_in_the_slurm_job(slurm_worker, slurm_cluster, project, sample_labels, tmp_path):  # noqa: F811
    package = sample_data.make_training_package(sample_labels, tmp_path / "long", epochs=200)
    handle = submit_training(package, spec_for(slurm_worker), project_dir=project)
    await collect(handle, until=first_epoch)
    await handle.stop_early()
    rest = await collect(handle)
    outcome = await handle.result()
    epochs = [e for e in rest if e.kind == "progress" and e.data.get("event") == "epoch_end"]
    assert len(epochs) < 100
    assert (outcome.model_dirs[0] / "best.ckpt").is_file()
    assert await until_no_jobs(slurm_cluster) == []


async def test_cancel_scancels_the_slurm_job_and_cleans_the_job_dir(slurm_worker, slurm_cluster, project, sample_labels, tmp_path):  # noqa: F811
    package = sample_data.make_training_package(sample_labels, tmp_path / "long", epochs=200)
    handle = submit_training(package, spec_for(slurm_worker), project_dir=project)
    await collect(handle, until=first_epoch)
    engine = slurm_worker.job.engine
    job_dir = engine.job_dir
    assert job_dir.is_relative_to(tmp_path / "shared-staging") and sleap_nn_processes(str(job_dir))
    assert len(await asyncio.to_thread(slurm_cluster.jobs)) == 1

    await handle.cancel()
    with pytest.raises(RemoteError) as info:
        await handle.result()
    assert info.value.code in ("cancelled", "job_cancelled")  # the client's word for "cancelled as you asked" (not worker_stopped)
    assert await until_no_jobs(slurm_cluster) == []
    assert sleap_nn_processes(str(job_dir)) == []
    assert not job_dir.exists()
    assert slurm_worker.state.status.value == "available"
