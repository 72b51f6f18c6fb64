"""The worker's own files (issue 13, item 11): owner-only whatever the umask, and a
full disk during training is the worker's failure (retry elsewhere), not the job's."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fixtures_e2e import coordinator, make_worker, project, room, spec_for  # noqa: F401
from fixtures_data import sample_labels, sample_root, training_package  # noqa: F401
from sleap_rtc_plugin.client.api import submit_training
from sleap_rtc_plugin.worker.engine import JobEngine, JobFailedError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        if not p.is_symlink():
            out[str(p.relative_to(root))] = stat.S_IMODE(p.stat().st_mode)
    return out


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


async def test_worker_files_are_owner_only_under_umask_022(umask_022, make_worker, sentinel, training_package, project):  # noqa: F811
    """Old code: data dir, jobs, incoming, cache and outbox were 0755 and results 0644."""
    worker = await make_worker("w", data_dir=sentinel.data_dir)
    handle = submit_training(training_package, spec_for(worker), project_dir=project)
    job_dir = worker.data_dir / "jobs" / handle.job_id
    seen: dict[str, int] = {}

    def peek(event) -> None:
        if job_dir.exists():
            seen.update({f"jobs/{handle.job_id}/{k}": v for k, v in modes(job_dir).items()})

    async for event in handle.events():
        peek(event)
    await handle.result()
    entry = worker.outbox.put("perm-check", job_type="track", files=[training_package])
    seen.update(modes(worker.data_dir))
    assert any(k.startswith(f"jobs/{handle.job_id}/package/") for k in seen), "the job dir was never seen"
    assert entry.path.is_dir()
    # Cache entries (peer/cache.py) are read-only 0444 but sit in a 0700 folder.
    loose = {k: oct(m) for k, m in seen.items() if m & 0o077 and not k.startswith("cache/")}
    assert not loose, f"readable by others: {loose}"
    for sub in (".", "jobs", "incoming", "cache", "partial", "outbox", "outbox/perm-check"):
        assert seen[sub] == 0o700, sub
    assert seen[f"outbox/perm-check/{training_package.name}"] == 0o600


@pytest.fixture
def full_disk_at():
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if os.system(f"mount -t tmpfs -o size={size} tmpfs {path} 2>/dev/null") != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        os.system(f"umount -l {path}")


async def test_disk_full_during_training_is_an_infrastructure_failure(training_package, tmp_path, full_disk_at):  # noqa: F811
    """Real sleap-nn writing its run into a full (64 kB) filesystem. Old code: ``own_error``
    stayed True, so a queued job was failed for good instead of retried on another worker."""
    engine = JobEngine("enospc", training_package, tmp_path / "job", kind="train")
    await engine.prepare()
    full_disk_at(engine.output_dir, "64k")
    with pytest.raises(JobFailedError) as info:
        await engine.run(lambda event: None)
    assert info.value.own_error is False and info.value.code == "disk_full"
    assert str(info.value).startswith("worker disk is full") and "No space left on device" in str(info.value)
