"""Windows service logic up to the OS boundary: files written for real, sc.exe/WinSW recorded."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sleap_rtc_plugin.service.cli import main
from sleap_rtc_plugin.service.system_commands import RecordingRunner

QUERY_RUNNING = """
SERVICE_NAME: sleap-rtc-worker
        TYPE               : 10  WIN32_OWN_PROCESS
        STATE              : 4  RUNNING
                                (STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)
        WIN32_EXIT_CODE    : 0  (0x0)
        PID                : 5120
"""


class FakeScm:
    """Answers sc.exe like Windows does: 1060 until the WinSW exe registers the service."""

    def __init__(self) -> None:
        self.registered = False

    def __call__(self, argv: list[str]):
        if argv[:2] == ["sc.exe", "queryex"]:
            if not self.registered:
                return subprocess.CompletedProcess(argv, 1060, "", "[SC] EnumQueryServicesStatus:OpenService FAILED 1060")
            return subprocess.CompletedProcess(argv, 0, QUERY_RUNNING, "")
        if argv[0].endswith(".exe") and argv[1:] == ["install"]:
            self.registered = True
        if argv[0].endswith(".exe") and argv[1:] == ["uninstall"]:
            self.registered = False
        return None


def _winsw(tmp_path: Path) -> Path:
    exe = tmp_path / "WinSW-x64.exe"
    exe.write_bytes(b"MZ fake wrapper")
    return exe


def test_windows_install_registers_with_recovery(tmp_path: Path, capsys) -> None:
    scm = FakeScm()
    runner = RecordingRunner(scm)
    root = tmp_path / "root"
    args = ["install", "--platform", "windows", "--root", str(root), "--winsw", str(_winsw(tmp_path)), "--python", r"C:\venv\Scripts\python.exe"]
    assert main(args, runner=runner) == 0
    base = root / "ProgramData" / "sleap-rtc"
    exe, xml = base / "service" / "sleap-rtc-worker.exe", base / "service" / "sleap-rtc-worker.xml"
    assert exe.read_bytes() == b"MZ fake wrapper"
    assert r"<executable>C:\venv\Scripts\python.exe</executable>" in xml.read_text()
    assert (base / "worker.env").is_file() and (base / "config.toml").is_file()
    recorded = [c[:2] if c[0].endswith(".exe") and c[0] != "sc.exe" else c for c in runner.calls]
    assert [str(exe), "install"] in recorded
    assert ["sc.exe", "failure", "sleap-rtc-worker", "reset=", "86400", "actions=", "restart/5000/restart/5000/restart/60000"] in runner.calls
    assert runner.calls[-1] == ["sc.exe", "start", "sleap-rtc-worker"]
    icacls = next(c for c in runner.calls if c[0] == "icacls")
    assert icacls[1] == str(base / "worker.env") and "/inheritance:r" in icacls

    runner.calls.clear()
    assert main(args, runner=runner) == 0  # idempotent: no second registration
    assert [str(exe), "install"] not in runner.calls
    assert "unchanged" in capsys.readouterr().out


def test_windows_install_without_winsw_is_actionable(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("SLEAP_RTC_WINSW", raising=False)
    assert main(["install", "--platform", "windows", "--root", str(tmp_path)], runner=RecordingRunner(FakeScm())) == 1
    assert "download WinSW-x64.exe" in capsys.readouterr().err


def test_windows_verbs_map_to_commands(tmp_path: Path) -> None:
    scm = FakeScm()
    runner = RecordingRunner(scm)
    root = tmp_path / "root"
    base = ["--platform", "windows", "--root", str(root)]
    assert main(["install", *base, "--winsw", str(_winsw(tmp_path)), "--no-start"], runner=runner) == 0
    exe = str(root / "ProgramData" / "sleap-rtc" / "service" / "sleap-rtc-worker.exe")
    runner.calls.clear()
    for verb in ("start", "stop", "restart"):
        assert main([verb, *base], runner=runner) == 0
    assert runner.calls == [["sc.exe", "start", "sleap-rtc-worker"], ["sc.exe", "stop", "sleap-rtc-worker"], [exe, "restart"]]

    runner.calls.clear()
    assert main(["uninstall", *base, "--purge"], runner=runner) == 0
    assert ["sc.exe", "stop", "sleap-rtc-worker"] in runner.calls and [exe, "uninstall"] in runner.calls
    assert not Path(exe).exists() and not (root / "ProgramData" / "sleap-rtc" / "worker.env").exists()


def test_windows_status_reads_sc_query(tmp_path: Path, capsys) -> None:
    scm = FakeScm()
    scm.registered = True
    runner = RecordingRunner(scm)
    # Installed and RUNNING per sc.exe, but no worker listening on the port: degraded (2).
    code = main(["status", "--platform", "windows", "--root", str(tmp_path), "--json", "--port", "9"], runner=runner)
    import json

    doc = json.loads(capsys.readouterr().out)
    assert code == 2
    svc = doc["units"][0]["service"]
    assert svc["manager"] == "windows" and svc["active_state"] == "active" and svc["main_pid"] == 5120
    scm.registered = False
    assert main(["status", "--platform", "windows", "--root", str(tmp_path)], runner=runner) == 4
