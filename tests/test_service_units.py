"""Rendered units: systemd-analyze verify, content rules, and service/ examples in sync."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sleap_rtc_plugin.service import units
from sleap_rtc_plugin.service.cli import render_examples

REPO = Path(__file__).resolve().parents[1]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze missing: apt-get install -y systemd (Debian package 'systemd')"
)


def _opts(tmp_path: Path, **kw) -> units.UnitOptions:
    config = tmp_path / "etc" / "config.toml"
    env_file = tmp_path / "etc" / "worker.env"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[default]\n")
    env_file.write_text("")
    return units.UnitOptions(python=os.path.abspath(sys.executable), config=config, env_file=env_file, user_data_dir=tmp_path / "data", **kw)


def _verify(path: Path, *, user: bool = False, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    argv = [SYSTEMD_ANALYZE, "verify"]
    if user:
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        argv.insert(1, "--user")
    return subprocess.run([*argv, str(path)], capture_output=True, text=True, env=env, timeout=120)


def _assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    bad = [line for line in result.stderr.splitlines() if "Unknown" in line or "ignoring" in line or "Failed" in line]
    assert not bad, result.stderr


@needs_analyze
def test_system_unit_verifies(tmp_path: Path) -> None:
    path = tmp_path / "sleap-rtc-worker.service"
    path.write_text(units.render_system_unit(_opts(tmp_path)))
    _assert_clean(_verify(path, tmp_path=tmp_path))


@needs_analyze
def test_system_unit_with_account_verifies(tmp_path: Path) -> None:
    path = tmp_path / "sleap-rtc-worker.service"
    path.write_text(units.render_system_unit(_opts(tmp_path, run_as="nobody")))
    _assert_clean(_verify(path, tmp_path=tmp_path))


@needs_analyze
def test_template_unit_instances_verify(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    template = tmp_path / "sleap-rtc-worker@.service"
    template.write_text(units.render_template_unit(opts, tmp_path / "etc" / "worker-%i.env"))
    for instance in ("0", "3"):
        _assert_clean(_verify(tmp_path / f"sleap-rtc-worker@{instance}.service", tmp_path=tmp_path))


@needs_analyze
def test_user_unit_verifies(tmp_path: Path) -> None:
    path = tmp_path / "sleap-rtc-worker.service"
    path.write_text(units.render_user_unit(_opts(tmp_path)))
    _assert_clean(_verify(path, user=True, tmp_path=tmp_path))


@needs_analyze
def test_verify_catches_a_missing_interpreter(tmp_path: Path) -> None:
    """Guards the test itself: verify must fail when ExecStart's binary does not exist."""
    opts = _opts(tmp_path)
    opts = units.UnitOptions(python=str(tmp_path / "no-such-python"), config=opts.config, env_file=opts.env_file)
    path = tmp_path / "sleap-rtc-worker.service"
    path.write_text(units.render_system_unit(opts))
    assert _verify(path, tmp_path=tmp_path).returncode != 0


def _unit_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_system_unit_content(tmp_path: Path) -> None:
    lines = _unit_lines(units.render_system_unit(_opts(tmp_path)))
    for required in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=120",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=300",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=sleap-rtc",
        "PrivateTmp=yes",
    ):
        assert required in lines, required
    assert not any(ln.startswith(("PrivateDevices", "DevicePolicy")) for ln in lines), "must not hide /dev/nvidia*"
    exec_start = next(ln for ln in lines if ln.startswith("ExecStart="))
    assert exec_start.split("=", 1)[1].split()[0] == os.path.abspath(sys.executable)
    assert exec_start.endswith(f"-m sleap_rtc_plugin worker --config {tmp_path}/etc/config.toml")
    assert f"EnvironmentFile={tmp_path}/etc/worker.env" in lines


def test_template_unit_pins_one_gpu(tmp_path: Path) -> None:
    lines = _unit_lines(units.render_template_unit(_opts(tmp_path), Path("/etc/sleap-rtc/worker-%i.env")))
    assert "Environment=CUDA_VISIBLE_DEVICES=%i" in lines
    assert "EnvironmentFile=-/etc/sleap-rtc/worker-%i.env" in lines
    assert "StateDirectory=sleap-rtc/%i" in lines


def test_exec_start_quoting() -> None:
    assert units.systemd_quote("/opt/my venv/bin/python") == '"/opt/my venv/bin/python"'
    assert units.systemd_quote("/x/100%/py") == "/x/100%%/py"
    assert units.systemd_quote("a$b") == '"a$$b"'


def test_missing_placeholder_is_an_error() -> None:
    with pytest.raises(units.TemplateError, match="needs values for"):
        units.render("system.service.in", name="x")


def test_winsw_xml_escapes_and_keeps_secrets_out() -> None:
    import xml.etree.ElementTree as ET

    text = units.render_winsw_xml(
        service_id="sleap-rtc-worker",
        python=r"C:\Program Files\Py & Co\python.exe",
        config=r"C:\ProgramData\sleap-rtc\config.toml",
        env_file=r"C:\ProgramData\sleap-rtc\worker.env",
        workdir=r"C:\ProgramData\sleap-rtc",
        logdir=r"C:\ProgramData\sleap-rtc\logs",
    )
    root = ET.fromstring(text)
    assert root.findtext("executable") == r"C:\Program Files\Py & Co\python.exe"
    assert root.findtext("arguments").startswith("-m sleap_rtc_plugin.service.launch --env-file ")
    assert [e.get("action") for e in root.findall("onfailure")] == ["restart", "restart", "restart"]
    assert "TOKEN" not in text and "SECRET" not in text


def test_service_folder_examples_are_in_sync(tmp_path: Path) -> None:
    """service/ (what lab IT deploys) must be exactly what the package templates render."""
    render_examples(tmp_path)
    shipped = REPO / "service"
    rendered = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for rel in rendered:
        assert (shipped / rel).is_file(), f"service/{rel} missing; run: sleap-rtc-service render-examples service"
        assert filecmp.cmp(tmp_path / rel, shipped / rel, shallow=False), (
            f"service/{rel} is stale; run: sleap-rtc-service render-examples service"
        )
