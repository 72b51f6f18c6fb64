"""Hostile packages against a running worker (issue 13, items 6 and 7).

A real coordinator, a real worker whose data dir sits inside a sentinel tree, and a
real client sending crafted packages over a real aiortc link. Each attack must be
refused with a clear one-line reason (or run with the worker's own paths) and leave
everything outside the worker's data dir untouched.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import pytest
import yaml

from fixtures_e2e import coordinator, make_worker, project, room, spec_for  # noqa: F401
from fixtures_data import sample_labels, sample_root, trained_model, training_package  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.client.api import RemoteError, submit_inference, submit_training

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def training_zip(labels: Path, out: Path, *, config_patch=None, jobs_patch=None) -> Path:
    """A SLEAP-style training package whose config/jobs entries the attacker edits."""
    pkg = sample_data.make_training_package(labels, out.parent / "src")
    files = {}
    with zipfile.ZipFile(pkg) as zf:
        for name in zf.namelist():
            files[name] = zf.read(name)
    if config_patch is not None:
        cfg = yaml.safe_load(files["single_instance.yaml"])
        config_patch(cfg)
        files["single_instance.yaml"] = yaml.safe_dump(cfg).encode()
    if jobs_patch is not None:
        jobs = yaml.safe_load(files["jobs.yaml"])
        jobs_patch(jobs)
        files["jobs.yaml"] = yaml.safe_dump(jobs).encode()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out


async def refused(handle) -> str:
    with pytest.raises(RemoteError) as info:
        await handle.result()
    assert info.value.code == "job_failed"
    return str(info.value)


def assert_clean(worker, job_id: str) -> None:
    assert worker.state.status.value == "available"
    assert not (worker.data_dir / "jobs" / job_id).exists()


# -- item 6: packages write outside the job folder ----------------------------------------


async def test_run_name_escaping_the_job_dir_trains_inside_it(make_worker, sentinel, sample_labels, project, tmp_path):  # noqa: F811
    """Old code: sleap-nn wrote the run into sentinel/other-project/models. Now the run
    name is flattened to one plain folder name under the worker's own ckpt_dir."""
    worker = await make_worker("w", data_dir=sentinel.data_dir)
    evil = "../../../../other-project/models/stolen"

    def patch(cfg):
        cfg["trainer_config"]["run_name"] = evil
        cfg["trainer_config"]["ckpt_dir"] = str(sentinel.root / "other-project" / "models")

    package = training_zip(sample_labels, tmp_path / "evil.slp.training_job.zip", config_patch=patch,
                           jobs_patch=lambda jobs: jobs["training"][0].pop("run_path"))
    handle = submit_training(package, spec_for(worker), project_dir=project)
    outcome = await handle.result()
    run_dir = outcome.model_dirs[0]
    assert (run_dir / "best.ckpt").is_file()
    assert "/" not in run_dir.name and ".." not in run_dir.name
    sentinel.assert_unchanged()


@pytest.mark.parametrize(
    "patch, message",
    [
        (lambda c: c["data_config"].update(val_labels_path=["/etc/passwd"]), "data_config.val_labels_path '/etc/passwd' must be a relative path inside the package"),
        (lambda c: c["trainer_config"].update(resume_ckpt_path="../../../../other-project/x.ckpt"), "trainer_config.resume_ckpt_path"),
        (lambda c: c["data_config"].update(cache_img_path="/tmp/elsewhere", data_pipeline_fw="torch_dataset_cache_img_disk"), "data_config.cache_img_path"),
        (lambda c: c.update(hydra={"run": {"dir": "/tmp/elsewhere"}}), "top-level key 'hydra' is not allowed"),
        (lambda c: c["trainer_config"].update(run_name="${oc.env:HOME}"), "interpolations"),
    ],
    ids=["val_labels_abs", "resume_ckpt_dotdot", "cache_img_abs", "hydra_key", "env_interpolation"],
)
async def test_config_paths_outside_the_package_are_refused(make_worker, sentinel, sample_labels, project, tmp_path, patch, message):  # noqa: F811
    worker = await make_worker("w", data_dir=sentinel.data_dir)
    package = training_zip(sample_labels, tmp_path / "evil.slp.training_job.zip", config_patch=patch)
    handle = submit_training(package, spec_for(worker), project_dir=project)
    text = await refused(handle)
    assert "package rejected (bad_package)" in text and message in text
    assert_clean(worker, handle.job_id)
    sentinel.assert_unchanged()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-o", "{elsewhere}"], "argument '-o' is not allowed"),
        (["--output_path={elsewhere}"], "is not allowed"),
        (["--stream-to-file", "{elsewhere}"], "argument '--stream-to-file' is not allowed"),
        (["--batch_size", "../../x"], "value '../../x' for sleap-nn flag --batch_size is not allowed"),
    ],
    ids=["dash_o", "output_path_eq", "stream_to_file", "path_as_value"],
)
async def test_inference_extra_args_naming_paths_are_refused(make_worker, sentinel, trained_model, sample_labels, project, tmp_path, extra, message):  # noqa: F811
    """Old code: ``-o`` after the worker's own ``-o`` wins, and predictions landed in the sibling project."""
    worker = await make_worker("w", data_dir=sentinel.data_dir)
    elsewhere = str(sentinel.root / "other-project" / "stolen.slp")
    args = [a.replace("{elsewhere}", elsewhere) for a in extra]
    package = sample_data.make_inference_package(sample_labels, [trained_model.run_dir], tmp_path / "pkg", extra_args=args)
    handle = submit_inference(package, spec_for(worker), project_dir=project)
    text = await refused(handle)
    assert "package rejected (bad_package)" in text and message in text
    assert_clean(worker, handle.job_id)
    sentinel.assert_unchanged()


# -- item 7: zip bombs and lying sizes -------------------------------------------------------


def _bomb(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("zeros.bin", "w", force_zip64=True) as out:
            block = bytes(1 << 20)
            for _ in range(size >> 20):
                out.write(block)
        zf.writestr("jobs.yaml", b"training: []\n")
    return path


def _lie_about_size(path: Path, name: str, declared: int) -> None:
    """Patch ``name``'s uncompressed size in the central directory and local header."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    pos = 0
    while True:
        pos = data.find(b"PK\x01\x02", pos)
        assert pos >= 0
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46:pos + 46 + name_len] == name.encode():
            break
        pos += 4
    struct.pack_into("<I", data, pos + 24, declared)
    struct.pack_into("<I", data, info.header_offset + 22, declared)
    path.write_bytes(bytes(data))


async def test_zip_bomb_is_refused_and_the_worker_takes_the_next_job(make_worker, sentinel, training_package, project, tmp_path):  # noqa: F811
    """Old code: 256 MB of zeros in a 250 kB package unpacked (cap 50 GiB, no ratio guard)."""
    worker = await make_worker("w", data_dir=sentinel.data_dir)
    bomb = _bomb(tmp_path / "bomb.slp.training_job.zip", 256 << 20)
    assert bomb.stat().st_size < 2 << 20
    handle = submit_training(bomb, spec_for(worker), project_dir=project)
    text = await refused(handle)
    assert "package rejected (package_too_large)" in text and "zip bomb" in text
    assert_clean(worker, handle.job_id)
    sentinel.assert_unchanged()

    good = submit_training(training_package, spec_for(worker), project_dir=project)
    outcome = await good.result()
    assert (outcome.model_dirs[0] / "best.ckpt").is_file()


async def test_unpack_cap_is_a_worker_setting(make_worker, sentinel, sample_labels, project, tmp_path):  # noqa: F811
    """Incompressible data under any ratio guard, over the worker's configured cap."""
    worker = await make_worker("w", data_dir=sentinel.data_dir, max_unpacked_bytes=1 << 20)
    package = training_zip(sample_labels, tmp_path / "big.slp.training_job.zip")
    with zipfile.ZipFile(package, "a") as zf:
        zf.writestr("noise.bin", os.urandom(3 << 20))
    handle = submit_training(package, spec_for(worker), project_dir=project)
    text = await refused(handle)
    assert "package rejected (package_too_large)" in text and "1.0 MB" in text
    assert_clean(worker, handle.job_id)
    sentinel.assert_unchanged()


async def test_lying_declared_size_is_refused_and_removed(make_worker, sentinel, sample_labels, project, tmp_path):  # noqa: F811
    """The header says 1 kB; the entry inflates to 32 MB. Refused, nothing left behind."""
    worker = await make_worker("w", data_dir=sentinel.data_dir)
    package = training_zip(sample_labels, tmp_path / "liar.slp.training_job.zip")
    with zipfile.ZipFile(package, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(32 << 20))
    _lie_about_size(package, "zeros.bin", 1024)
    handle = submit_training(package, spec_for(worker), project_dir=project)
    text = await refused(handle)
    assert "package rejected (bad_package)" in text and ("corrupt" in text or "declared size" in text)
    assert_clean(worker, handle.job_id)
    sentinel.assert_unchanged()


@pytest.fixture
def small_jobs_disk(sentinel):
    """The worker's jobs folder on a real 4 MB filesystem (tmpfs; the tests run as root)."""
    jobs = sentinel.data_dir / "jobs"
    jobs.mkdir(parents=True)
    if os.system(f"mount -t tmpfs -o size=4m tmpfs {jobs} 2>/dev/null") != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield jobs
    os.system(f"umount -l {jobs}")


async def test_package_larger_than_free_disk_is_refused_as_disk_full(make_worker, sentinel, small_jobs_disk, sample_labels, project, tmp_path):  # noqa: F811
    worker = await make_worker("w", data_dir=sentinel.data_dir)
    package = training_zip(sample_labels, tmp_path / "fits-nowhere.slp.training_job.zip")
    handle = submit_training(package, spec_for(worker), project_dir=project)
    text = await refused(handle)
    assert "package rejected (disk_full)" in text and "try another worker" in text
    assert_clean(worker, handle.job_id)
    assert list(small_jobs_disk.iterdir()) == []
    sentinel.assert_unchanged()
