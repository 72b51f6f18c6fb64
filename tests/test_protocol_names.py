"""Validated names: what may become a path component, checked once at decode."""

from __future__ import annotations

import os

import pytest

from sleap_rtc_plugin.protocol import PEER, ProtocolError
from sleap_rtc_plugin.protocol.names import check_id, child_path, is_id, is_plain_file_name

HOSTILE = ["", ".", "..", "../x", "../../etc", "/abs/dir", "a/b", "a\\b", "C:evil", "x\x00y", "NUL", "con.txt", "a" * 129, " lead", "\n"]


@pytest.mark.parametrize("value", HOSTILE + ["-rf", ".hidden", "a..b", "é"])
def test_hostile_ids_are_refused(value):
    assert not is_id(value)
    with pytest.raises(ProtocolError) as err:
        check_id(value, "job id")
    assert err.value.code == "bad_value" and "\n" not in str(err.value)


@pytest.mark.parametrize("value", ["a1b2c3d4e5f6", "w-1a2b3c", "gpu_box.lab", "J" * 128])
def test_ordinary_ids_pass(value):
    assert check_id(value) == value


@pytest.mark.parametrize("value", [v for v in HOSTILE if v != "a" * 129] + ["a" * 256, "tab\there"])
def test_hostile_file_names_are_refused(value):
    assert not is_plain_file_name(value)


def test_file_names_allow_what_sleap_writes():
    for name in ["labels.pkg.slp", "centroid.yaml", "small robot (1).mp4", "résumé.slp"]:
        assert is_plain_file_name(name)


@pytest.mark.parametrize("job_id", ["/abs/dir", "../../x", "a/b", "..", "x\x00"])
def test_decode_refuses_a_traversing_job_id(job_id):
    frame = {"type": "job_submit", "v": 1, "job_id": job_id, "kind": "train", "package_sha256": "0" * 64, "package_name": "p.zip"}
    with pytest.raises(ProtocolError) as err:
        PEER.from_dict(frame)
    assert err.value.code == "bad_value" and "job_submit.job_id" in str(err.value)


def test_child_path_stays_inside_even_through_a_planted_symlink(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    assert child_path(root, "jobs", "abc") == root.resolve() / "jobs" / "abc"
    os.symlink(tmp_path, root / "jobs")
    with pytest.raises(ProtocolError) as err:
        child_path(root, "jobs", "abc")
    assert err.value.code == "bad_path"
    with pytest.raises(ProtocolError):
        child_path(root, "..")
