"""Room-secret lookup order and the create-secret helper."""

from __future__ import annotations

import argparse
import json
import stat

from sleap_rtc_plugin.peer.secrets import add_secret_arguments, create_secret, env_var_name, lookup_secret, run_create_secret


def test_env_var_name():
    assert env_var_name("lab-3.a") == "SLEAP_RTC_ROOM_SECRET_LAB_3_A"


def test_lookup_order(tmp_path, monkeypatch):
    monkeypatch.delenv("SLEAP_RTC_ROOM_SECRET_R1", raising=False)
    assert lookup_secret("r1", config=tmp_path) is None
    saved = create_secret("r1", save=True, config=tmp_path)
    assert lookup_secret("r1", config=tmp_path) == saved.encode()
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "r1").write_text("from-file\n")
    assert lookup_secret("r1", config=tmp_path) == b"from-file"
    monkeypatch.setenv("SLEAP_RTC_ROOM_SECRET_R1", "from-env")
    assert lookup_secret("r1", config=tmp_path) == b"from-env"
    assert lookup_secret("r1", "explicit", config=tmp_path) == b"explicit"


def test_create_secret_saves_private_file(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_secret_arguments(parser)
    args = parser.parse_args(["--room", "lab", "--save", "--config-dir", str(tmp_path)])
    assert run_create_secret(args) == 0
    printed = capsys.readouterr().out.strip()
    path = tmp_path / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["room_secrets"]["lab"] == printed
    assert len(printed) >= 40
    other = create_secret("lab2", save=False, config=tmp_path)
    assert "lab2" not in json.loads(path.read_text())["room_secrets"] and other != printed
