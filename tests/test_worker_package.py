"""Package checks: what a remote client sends is validated before anything runs."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
import yaml

from fixtures_data import sample_labels, sample_root, training_package  # noqa: F401
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.worker.package import Limits, PackageError, check_entry_name, open_files, open_package


def _zip(path: Path, entries: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def _entries(zip_path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zip_path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_training_package_parses(training_package, tmp_path):
    spec = open_package(training_package, tmp_path / "job dir")
    assert spec.kind == "train"
    assert spec.labels_path.name == "blobs.pkg.slp" and spec.labels_path.is_file()
    assert [m.head for m in spec.models] == ["single_instance"]
    assert spec.models[0].max_epochs == 2
    assert spec.models[0].run_name.endswith(".single_instance.n=20")
    assert (tmp_path / "job dir" / "train-script.sh").is_file()


def test_top_down_trains_centroid_first(sample_labels, tmp_path):
    pkg = sample_data.make_training_package(sample_labels, tmp_path, model_type="top_down")
    entries = _entries(pkg)
    jobs = yaml.safe_load(entries["jobs.yaml"])
    # Reverse jobs.yaml so the order must come from the head types, not the file.
    jobs["training"].reverse()
    entries["jobs.yaml"] = yaml.safe_dump(jobs).encode()
    spec = open_package(_zip(tmp_path / "rev.zip", entries), tmp_path / "job")
    assert [m.head for m in spec.models] == ["centroid", "centered_instance"]


def test_missing_labels_named_in_jobs_yaml(training_package, tmp_path):
    entries = _entries(training_package)
    del entries["blobs.pkg.slp"]
    with pytest.raises(PackageError, match=r"package has no blobs\.pkg\.slp"):
        open_package(_zip(tmp_path / "p.zip", entries), tmp_path / "job")


def test_missing_labels_without_jobs_yaml(training_package, tmp_path):
    entries = {"single_instance.yaml": _entries(training_package)["single_instance.yaml"]}
    with pytest.raises(PackageError, match=r"^package has no \.pkg\.slp labels file$"):
        open_package(_zip(tmp_path / "p.zip", entries), tmp_path / "job")


def test_missing_config_named_in_jobs_yaml(training_package, tmp_path):
    entries = _entries(training_package)
    del entries["single_instance.yaml"]
    with pytest.raises(PackageError, match=r"package has no single_instance\.yaml"):
        open_package(_zip(tmp_path / "p.zip", entries), tmp_path / "job")


def test_config_without_head_is_rejected(training_package, tmp_path):
    entries = _entries(training_package)
    entries["single_instance.yaml"] = yaml.safe_dump({"model_config": {"head_configs": {}}}).encode()
    with pytest.raises(PackageError, match="exactly one head"):
        open_package(_zip(tmp_path / "p.zip", entries), tmp_path / "job")


def test_broken_yaml_is_one_line_error(training_package, tmp_path):
    entries = _entries(training_package)
    entries["jobs.yaml"] = b"training: [unclosed"
    with pytest.raises(PackageError) as err:
        open_package(_zip(tmp_path / "p.zip", entries), tmp_path / "job")
    assert "jobs.yaml" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "name, why",
    [
        ("../evil.txt", r"outside the package"),
        ("a/../../evil.txt", r"outside the package"),
        ("/etc/evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
        ("c:evil.txt", "absolute path"),
        ("dir\\..\\evil.txt", "backslash"),
    ],
)
def test_traversal_entries_rejected(name, why, tmp_path):
    pkg = _zip(tmp_path / "p.zip", {"ok.yaml": b"a: 1", name: b"x"})
    job = tmp_path / "sub" / "job"
    with pytest.raises(PackageError, match=why):
        open_package(pkg, job)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "sub" / "evil.txt").exists()
    assert not job.exists() or not any(job.iterdir())


def test_symlink_entry_rejected(tmp_path):
    pkg = _zip(tmp_path / "p.zip", {"ok.yaml": b"a: 1"}, symlinks=("link",))
    with pytest.raises(PackageError, match="symlink"):
        open_package(pkg, tmp_path / "job")


def test_zip_bomb_rejected_before_extraction(tmp_path):
    pkg = _zip(tmp_path / "bomb.zip", {f"zeros{i}.bin": bytes(4 << 20) for i in range(3)})
    assert pkg.stat().st_size < 200_000
    with pytest.raises(PackageError, match="zip bomb"):
        open_package(pkg, tmp_path / "job", limits=Limits(max_total_bytes=10 << 20))
    assert not (tmp_path / "job").exists()


def test_too_many_entries_rejected(tmp_path):
    pkg = _zip(tmp_path / "many.zip", {f"f{i}": b"" for i in range(30)})
    with pytest.raises(PackageError, match="30 entries; the limit is 20"):
        open_package(pkg, tmp_path / "job", limits=Limits(max_entries=20))


def test_lying_size_header_stops_extraction(training_package, tmp_path):
    """A central directory that under-declares an entry's size is caught while copying."""
    raw = bytearray(io.BytesIO(training_package.read_bytes()).getvalue())
    with zipfile.ZipFile(training_package) as zf:
        info = zf.getinfo("train-script.sh")
    real = info.file_size.to_bytes(4, "little")
    fake = (1).to_bytes(4, "little")
    # Patch uncompressed size in both the local header and the central directory.
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        start = 0
        while (i := raw.find(sig, start)) != -1:
            off = 22 if sig == b"PK\x03\x04" else 24
            name_off = 30 if sig == b"PK\x03\x04" else 46
            nlen = int.from_bytes(raw[i + (26 if sig == b"PK\x03\x04" else 28): i + (28 if sig == b"PK\x03\x04" else 30)], "little")
            if raw[i + name_off: i + name_off + nlen] == b"train-script.sh":
                assert raw[i + off: i + off + 4] == real
                raw[i + off: i + off + 4] = fake
            start = i + 4
    bad = tmp_path / "liar.zip"
    bad.write_bytes(bytes(raw))
    with pytest.raises(PackageError, match="corrupt|past its declared size"):
        open_package(bad, tmp_path / "job")


@pytest.mark.parametrize("content, why", [(b"not a zip at all", "not a valid zip"), (None, "empty")])
def test_not_a_zip_or_empty(content, why, tmp_path):
    p = tmp_path / "x.zip"
    if content is None:
        _zip(p, {})
    else:
        p.write_bytes(content)
    with pytest.raises(PackageError, match=why):
        open_package(p, tmp_path / "job")


def test_job_dir_must_be_empty(training_package, tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "old").write_text("x")
    with pytest.raises(PackageError, match="not empty"):
        open_package(training_package, tmp_path / "job")


def test_bare_labels_plus_config(sample_labels, training_package, tmp_path):
    cfg = tmp_path / "my config.yaml"
    cfg.write_bytes(_entries(training_package)["single_instance.yaml"])
    spec = open_files(sample_labels, [cfg], tmp_path / "job")
    assert spec.kind == "train" and spec.models[0].head == "single_instance"
    copied = yaml.safe_load((tmp_path / "job" / "my config.yaml").read_text())
    assert copied["data_config"]["train_labels_path"] == ["blobs.pkg.slp"]
    with pytest.raises(PackageError, match="no config yaml"):
        open_files(sample_labels, [], tmp_path / "job2")


def test_inference_package_needs_trained_model(sample_labels, tmp_path):
    entries = {
        "blobs.pkg.slp": sample_labels.read_bytes(),
        "models/m1/training_config.yaml": b"a: 1",
        "jobs.yaml": yaml.safe_dump({"training": [], "inference": [{"data_path": "blobs.pkg.slp", "models": ["models/m1"]}]}).encode(),
    }
    with pytest.raises(PackageError, match=r"no trained model at models/m1 \(best.ckpt missing\)"):
        open_package(_zip(tmp_path / "i.zip", entries), tmp_path / "job")


def test_check_entry_name_normalises_dot_segments():
    assert str(check_entry_name("./a/./b.txt")) == "a/b.txt"


def test_inputs_placed_beside_the_package_and_named_as_data(tmp_path):
    """A video sent on its own lands at inputs/<name>, where jobs.yaml names it as data."""
    model = {"models/m/best.ckpt": b"x", "models/m/training_config.yaml": b"{}"}
    jobs = {"inference": [{"data_path": "inputs/clip.mp4", "models": ["models/m"], "frames": [0, 1]}]}
    pkg = _zip(tmp_path / "p.zip", {"jobs.yaml": yaml.safe_dump(jobs).encode(), **model})
    clip = tmp_path / "received.mp4"
    clip.write_bytes(b"video bytes")
    spec = open_package(pkg, tmp_path / "job", inputs={"clip.mp4": clip})
    assert spec.inference[0].data_path == tmp_path / "job" / "inputs" / "clip.mp4"
    assert spec.inference[0].data_path.read_bytes() == b"video bytes"
    with pytest.raises(PackageError, match="no clip.mp4"):
        open_package(pkg, tmp_path / "job2")  # named as data but not sent


@pytest.mark.parametrize("name", ["../x.mp4", "a/b.mp4", "", "..", "a\\b.mp4", "C:x.mp4", "a\x00b"])
def test_input_names_must_be_plain(tmp_path, name):
    from sleap_rtc_plugin.worker.package import place_inputs

    src = tmp_path / "v.mp4"
    src.write_bytes(b"v")
    with pytest.raises(PackageError, match="plain file name"):
        place_inputs(tmp_path / "job", {name: src})
    assert not (tmp_path / "x.mp4").exists()


def test_input_may_not_replace_a_package_file(tmp_path):
    pkg = _zip(tmp_path / "p.zip", {"inputs/clip.mp4": b"from the zip", "jobs.yaml": b"{}"})
    src = tmp_path / "v.mp4"
    src.write_bytes(b"sent")
    with pytest.raises(PackageError, match="also sent as an input"):
        open_package(pkg, tmp_path / "job", inputs={"clip.mp4": src})
    assert (tmp_path / "job" / "inputs" / "clip.mp4").read_bytes() == b"from the zip"
