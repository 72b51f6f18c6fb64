"""The allow-list of what a package may hand sleap-nn, checked against the installed sleap-nn CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from sleap_rtc_plugin.jobspec.refusals import PackageError
from sleap_rtc_plugin.jobspec.sleapnn_args import (
    COMMON_FLAGS,
    PREDICT_FLAGS,
    check_device,
    check_extra_args,
    check_training_config,
    safe_run_name,
)


def _options(command: str) -> dict[str, object]:
    from sleap_nn.cli import cli

    out = {}
    for param in cli.commands[command].params:
        for opt in [*param.opts, *getattr(param, "secondary_opts", [])]:
            out[opt] = param
    return out


@pytest.mark.parametrize("command", ["track", "predict"])
def test_every_allowed_flag_is_a_real_sleap_nn_option_that_names_no_path(command):
    real = _options(command)
    allowed = {**COMMON_FLAGS, **(PREDICT_FLAGS if command == "predict" else {})}
    assert set(allowed) <= set(real), sorted(set(allowed) - set(real))
    for flag in allowed:
        assert not any(word in flag for word in ("path", "dir", "file", "ckpt", "output", "model", "device", "data", "checkpoint")), flag


@pytest.mark.parametrize("command", ["track", "predict"])
def test_every_path_valued_sleap_nn_option_is_refused(command):
    """Any option whose name says it takes a path or device is refused, whatever its value."""
    for flag in _options(command):
        if any(word in flag for word in ("path", "dir", "file", "ckpt", "output", "model", "device", "checkpoint", "overlay", "headers")):
            with pytest.raises(PackageError, match="is not allowed"):
                check_extra_args([flag, "x"], command, "test")


def test_values_must_match_the_flag_kind():
    assert check_extra_args(["-b", "4", "--tracking", "--peak_threshold=0.2", "--frames", "1-3,7"], "track", "t") == [
        "-b", "4", "--tracking", "--peak_threshold", "0.2", "--frames", "1-3,7"]
    for args in (["--batch_size", "/tmp/x"], ["--features", "../../x"], ["--tracking=1"], ["--batch_size"], ["--tracker", "sort"]):
        with pytest.raises(PackageError):
            check_extra_args(args, "track", "t")
    assert check_extra_args(["--tracker", "sort"], "predict", "t") == ["--tracker", "sort"]


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1", "mps", "auto", None])
def test_known_devices_pass(device):
    assert check_device(device, "t") == device


@pytest.mark.parametrize("device", ["/dev/nvidia0", "cuda:0;rm", "", 3])
def test_other_devices_are_refused(device):
    with pytest.raises(PackageError, match="device"):
        check_device(device, "t")


@pytest.mark.parametrize(
    "name, expected",
    [("251130_120000.centroid.n=20", "251130_120000.centroid.n=20"), ("../../..", "_"), ("/abs/run", "_abs_run"), ("", "head"), (None, "head"), ("..", "head")],
)
def test_run_names_become_one_plain_folder_name(name, expected):
    got = safe_run_name(name, "head")
    assert got == expected or (expected == "_" and set(got) <= {"_"} and got)
    assert "/" not in got and ".." not in got


def test_config_paths_must_stay_in_the_package(tmp_path: Path):
    ok = {"data_config": {"train_labels_path": ["a.pkg.slp"], "val_labels_path": ["sub/b.slp"]}, "trainer_config": {"ckpt_dir": "/anything/overridden"}}
    check_training_config(ok, tmp_path, "c.yaml")
    for bad in ({"data_config": {"test_file_path": "/etc/passwd"}}, {"model_config": {"pretrained_head_weights": "../x.ckpt"}},
                {"defaults": ["x"]}, {"trainer_config": {"wandb": {"name": "${oc.env:TOKEN}"}}}):
        with pytest.raises(PackageError):
            check_training_config(bad, tmp_path, "c.yaml")
