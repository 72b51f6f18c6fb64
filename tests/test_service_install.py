"""install / uninstall for real under a temporary root; systemctl calls recorded at the seam."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from sleap_rtc_plugin.service.checks import gpu_warning, linger_warning
from sleap_rtc_plugin.service.cli import main
from sleap_rtc_plugin.service.envfile import parse_env
from sleap_rtc_plugin.service.system_commands import RecordingRunner


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_system_install_writes_files_and_enables(tmp_path: Path, capsys) -> None:
    runner = RecordingRunner()
    assert main(["install", "--root", str(tmp_path)], runner=runner) == 0
    unit = tmp_path / "etc/systemd/system/sleap-rtc-worker.service"
    env = tmp_path / "etc/sleap-rtc/worker.env"
    config = tmp_path / "etc/sleap-rtc/config.toml"
    assert _mode(env) == 0o600 and _mode(unit) == 0o644 and _mode(config) == 0o644
    text = unit.read_text()
    assert f"ExecStart={os.path.abspath(sys.executable)} -m sleap_rtc_plugin worker --config /etc/sleap-rtc/config.toml" in text
    assert "EnvironmentFile=/etc/sleap-rtc/worker.env" in text
    assert runner.calls == [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "sleap-rtc-worker.service"]]
    out = capsys.readouterr().out
    assert f"wrote    {unit}" in out and "next:" in out and "sleap-rtc-service status" in out

    from sleap_rtc_plugin.config import load_settings

    assert load_settings(config, env={})["worker.status_port"] == 8766  # the starter config is valid


def test_install_is_idempotent_and_keeps_secrets(tmp_path: Path, capsys) -> None:
    assert main(["install", "--root", str(tmp_path), "--no-start"], runner=RecordingRunner()) == 0
    env = tmp_path / "etc/sleap-rtc/worker.env"
    env.write_text("SLEAP_RTC_TOKEN=s3cret\n")
    os.chmod(env, 0o644)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()
    runner = RecordingRunner()
    assert main(["install", "--root", str(tmp_path), "--no-start"], runner=runner) == 0
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert runner.calls == [["systemctl", "enable", "sleap-rtc-worker.service"]]  # no daemon-reload: nothing changed
    captured = capsys.readouterr()
    assert "unchanged" in captured.out and "tightened to 0600" in captured.err
    assert _mode(env) == 0o600
    assert parse_env(env.read_text()) == {"SLEAP_RTC_TOKEN": "s3cret"}


def test_install_refuses_different_unit_without_force(tmp_path: Path, capsys) -> None:
    assert main(["install", "--root", str(tmp_path)], runner=RecordingRunner()) == 0
    unit = tmp_path / "etc/systemd/system/sleap-rtc-worker.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=120", "WatchdogSec=5"))
    capsys.readouterr()
    assert main(["install", "--root", str(tmp_path)], runner=RecordingRunner()) == 1
    err = capsys.readouterr().err
    assert "differs from what install would write" in err and "--force" in err and err.count("\n") == 1
    assert "WatchdogSec=5" in unit.read_text()

    runner = RecordingRunner()
    assert main(["install", "--root", str(tmp_path), "--force"], runner=runner) == 0
    assert "WatchdogSec=120" in unit.read_text()
    assert ["systemctl", "daemon-reload"] in runner.calls


def test_user_install_and_linger_warning(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/alice/.config")
    runner = RecordingRunner(
        lambda a: subprocess.CompletedProcess(a, 0, "Linger=no\n", "") if a[0] == "loginctl" else None
    )
    assert main(["install", "--user", "--root", str(tmp_path)], runner=runner) == 0
    unit = tmp_path / "home/alice/.config/systemd/user/sleap-rtc-worker.service"
    assert unit.is_file() and "WantedBy=default.target" in unit.read_text()
    assert ["systemctl", "--user", "enable", "--now", "sleap-rtc-worker.service"] in runner.calls
    err = capsys.readouterr().err
    assert "sudo loginctl enable-linger" in err


def test_linger_on_gives_no_warning() -> None:
    runner = RecordingRunner(lambda a: subprocess.CompletedProcess(a, 0, "Linger=yes\n", ""))
    assert linger_warning(runner, "alice") is None
    assert runner.calls == [["loginctl", "show-user", "alice", "-p", "Linger"]]


def test_gpu_check(tmp_path: Path) -> None:
    assert "no NVIDIA GPU visible" in gpu_warning(tmp_path, which=lambda _: None)
    assert gpu_warning(tmp_path, which=lambda _: "/usr/bin/nvidia-smi") is None
    (tmp_path / "nvidia0").touch()
    assert gpu_warning(tmp_path, which=lambda _: None) is None


def test_gpus_template_install_and_verbs(tmp_path: Path, capsys) -> None:
    runner = RecordingRunner()
    assert main(["install", "--root", str(tmp_path), "--gpus", "0,1", "--status-port", "9000"], runner=runner) == 0
    conf = tmp_path / "etc/sleap-rtc"
    assert (tmp_path / "etc/systemd/system/sleap-rtc-worker@.service").is_file()
    assert not (tmp_path / "etc/systemd/system/sleap-rtc-worker.service").exists()
    assert parse_env((conf / "worker-1.env").read_text()) == {"SLEAP_RTC_WORKER_STATUS_PORT": "9001"}
    assert runner.calls[-1] == ["systemctl", "enable", "--now", "sleap-rtc-worker@0.service", "sleap-rtc-worker@1.service"]

    runner = RecordingRunner()
    assert main(["restart", "--root", str(tmp_path)], runner=runner) == 0
    assert main(["stop", "--root", str(tmp_path), "--instance", "1"], runner=runner) == 0
    assert main(["logs", "--root", str(tmp_path), "-n", "50"], runner=runner) == 0
    assert runner.calls == [
        ["systemctl", "restart", "sleap-rtc-worker@0.service", "sleap-rtc-worker@1.service"],
        ["systemctl", "stop", "sleap-rtc-worker@1.service"],
        ["journalctl", "--no-pager", "-n", "50", "-o", "short-iso", "-u", "sleap-rtc-worker@0.service", "-u", "sleap-rtc-worker@1.service"],
    ]


def test_bad_gpus_is_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["install", "--root", str(tmp_path), "--gpus", "0,a"], runner=RecordingRunner()) == 1
    assert capsys.readouterr().err.startswith("sleap-rtc-service: --gpus '0,a'")


def test_uninstall_keeps_secrets_unless_purge(tmp_path: Path, capsys) -> None:
    assert main(["install", "--root", str(tmp_path)], runner=RecordingRunner()) == 0
    state = tmp_path / "var/lib/sleap-rtc/worker"
    state.mkdir(parents=True)
    (state / "outbox.db").write_text("x")
    runner = RecordingRunner()
    assert main(["uninstall", "--root", str(tmp_path)], runner=runner) == 0
    assert runner.calls[0] == ["systemctl", "disable", "--now", "sleap-rtc-worker.service"]
    assert ["systemctl", "daemon-reload"] in runner.calls
    assert not (tmp_path / "etc/systemd/system/sleap-rtc-worker.service").exists()
    assert (tmp_path / "etc/sleap-rtc/worker.env").exists() and state.exists()
    assert "--purge removes them" in capsys.readouterr().out

    assert main(["uninstall", "--root", str(tmp_path), "--purge"], runner=RecordingRunner()) == 0
    assert not (tmp_path / "etc/sleap-rtc").exists() and not (tmp_path / "var/lib/sleap-rtc").exists()
    assert main(["uninstall", "--root", str(tmp_path)], runner=RecordingRunner()) == 0  # again: a no-op
    assert "not installed" in capsys.readouterr().out


def test_print_installs_nothing(tmp_path: Path, capsys) -> None:
    runner = RecordingRunner()
    assert main(["print", "--root", str(tmp_path), "--gpus", "0"], runner=runner) == 0
    out = capsys.readouterr().out
    assert "Environment=CUDA_VISIBLE_DEVICES=%i" in out and "SLEAP_RTC_WORKER_STATUS_PORT=8766" in out
    assert list(tmp_path.iterdir()) == [] and runner.calls == []


def test_root_from_environment_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SLEAP_RTC_SERVICE_ROOT", str(tmp_path))
    assert main(["install", "--no-start"], runner=RecordingRunner()) == 0
    assert (tmp_path / "etc/systemd/system/sleap-rtc-worker.service").is_file()


def test_system_install_without_root_privileges_is_refused(monkeypatch, capsys) -> None:
    monkeypatch.delenv("SLEAP_RTC_SERVICE_ROOT", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    runner = RecordingRunner()
    assert main(["install"], runner=runner) == 1
    assert "run it with sudo, or add --user" in capsys.readouterr().err
    assert runner.calls == []


def test_launch_loads_env_file_then_runs_cli(tmp_path: Path) -> None:
    """The Windows entry point: env file → environment, then the real sleap-rtc CLI in-process."""
    env_file = tmp_path / "worker.env"
    env_file.write_text("SLEAP_RTC_WORKER_STATUS_PORT=9123\n# comment\nSLEAP_RTC_TOKEN='tok'\n")
    config = tmp_path / "config.toml"
    config.write_text("[default]\n")
    result = subprocess.run(
        [sys.executable, "-m", "sleap_rtc_plugin.service.launch", "--env-file", str(env_file), "--", "config", "show", "--config", str(config)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("worker.status_port"))
    assert "9123" in line and "env SLEAP_RTC_WORKER_STATUS_PORT" in line
    bad = subprocess.run(
        [sys.executable, "-m", "sleap_rtc_plugin.service.launch", "--env-file", str(tmp_path / "absent.env"), "--", "worker"],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr
