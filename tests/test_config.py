"""Layered config: precedence, environments, and one-line errors naming file and key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sleap_rtc_plugin.config import ConfigError, load_settings, room_secret_env_var

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sleap-rtc.toml"
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_configured(tmp_path):
    settings = load_settings(None, env={}, cli=None) if not (Path.cwd() / "sleap-rtc.toml").exists() else None
    if settings is None:
        pytest.skip("a sleap-rtc.toml in the working directory would shadow the defaults")
    assert settings["server.port"] == 8765
    assert settings["server.host"] == "127.0.0.1"
    assert settings.origins["server.port"] == "default"


def test_precedence_cli_over_env_over_environment_table_over_default_table(tmp_path):
    path = write(
        tmp_path,
        """
[default]
signaling_ws = "ws://default:1"
room_id = "from-default"
[default.server]
port = 1000
[environments.staging]
signaling_ws = "ws://staging:2"
[environments.staging.server]
port = 2000
""",
    )
    env = {"SLEAP_RTC_ENV": "staging", "SLEAP_RTC_SERVER_PORT": "3000"}
    s = load_settings(path, env=env, cli={"server__port": 4000})
    assert s["server.port"] == 4000 and s.origins["server.port"] == "command line"
    s = load_settings(path, env=env)
    assert s["server.port"] == 3000 and s.origins["server.port"] == "env SLEAP_RTC_SERVER_PORT"
    assert s["signaling_ws"] == "ws://staging:2" and "[environments.staging]" in s.origins["signaling_ws"]
    assert s["room_id"] == "from-default" and "[default]" in s.origins["room_id"]
    s = load_settings(path, env={})
    assert s["server.port"] == 1000 and s["signaling_ws"] == "ws://default:1"


def test_env_var_types_are_parsed(tmp_path):
    path = write(tmp_path, "[default]\n")
    s = load_settings(path, env={"SLEAP_RTC_ICE_LOOPBACK": "yes", "SLEAP_RTC_ICE_SERVERS": "stun:a:1, turn:b:2", "SLEAP_RTC_WORKER_LABELS": "gpu=a100,site=x"})
    assert s["ice_loopback"] is True
    assert s["ice_servers"] == ["stun:a:1", "turn:b:2"]
    assert s["worker.labels"] == {"gpu": "a100", "site": "x"}
    with pytest.raises(ConfigError, match="SLEAP_RTC_SERVER_PORT='eighty' is not a valid int"):
        load_settings(path, env={"SLEAP_RTC_SERVER_PORT": "eighty"})


@pytest.mark.parametrize(
    "text, message",
    [
        ("[default]\nsignalling_ws = 'x'\n", r"unknown key 'signalling_ws' in \[default\]"),
        ("[default.server]\nprot = 1\n", r"unknown key 'server.prot' in \[default\]"),
        ("[default.server]\nport = 'x'\n", r"server.port must be int, not str"),
        ("[environments.prod]\n", r"unknown environment \[environments.prod\]"),
        ("[defaults]\n", r"unknown top-level table \[defaults\]"),
        ("[default\n", r"not valid TOML"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, env={})
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_environment_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="SLEAP_RTC_ENV='prod' is not a known environment; use one of: development, staging, production"):
        load_settings(write(tmp_path, ""), env={"SLEAP_RTC_ENV": "prod"})


def test_example_config_is_valid_and_covers_every_environment():
    for environment in ("development", "staging", "production"):
        load_settings(REPO / "config.example.toml", env={"SLEAP_RTC_ENV": environment})


def test_room_secret_env_var_name():
    assert room_secret_env_var("lab-1.a") == "SLEAP_RTC_ROOM_SECRET_LAB_1_A"


def test_config_show_cli_reports_origins(tmp_path):
    path = write(tmp_path, "[default.server]\nport = 4321\n")
    out = subprocess.run(
        [sys.executable, "-m", "sleap_rtc_plugin", "config", "show", "--config", str(path), "--json"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "SLEAP_RTC_TOKEN": "secret-token", "HOME": str(tmp_path)},
        check=True,
    )
    data = json.loads(out.stdout)
    assert data["settings"]["server.port"] == {"value": 4321, "origin": f"{path} [default]"}
    assert data["settings"]["token"]["value"] == "***"
    assert "secret-token" not in out.stdout


def test_cli_config_error_is_one_line_and_exit_2(tmp_path):
    path = write(tmp_path, "[default]\nbogus = 1\n")
    out = subprocess.run([sys.executable, "-m", "sleap_rtc_plugin", "config", "show", "--config", str(path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "unknown key 'bogus'" in out.stderr
