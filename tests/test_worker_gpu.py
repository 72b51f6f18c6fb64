"""Capabilities: the real CPU path here, NVML through a fake module at the import seam."""

from __future__ import annotations

import logging

from fake_nvml import fake_nvml as _fake_nvml

from sleap_rtc_plugin.worker import gpu


def test_nvml_gpus_reported(monkeypatch):
    fake = _fake_nvml(
        [
            {"name": b"NVIDIA H100 80GB HBM3", "total": 81559 * 2**20, "free": 80000 * 2**20},
            {"name": "NVIDIA RTX A6000", "total": 49140 * 2**20, "free": 100 * 2**20},
        ]
    )
    monkeypatch.setattr(gpu, "_load_nvml", lambda: fake)
    caps = gpu.capabilities()
    assert caps["accelerator"] == "cuda"
    assert caps["gpus"] == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_mb": 81559, "memory_free_mb": 80000},
        {"index": 1, "name": "NVIDIA RTX A6000", "memory_total_mb": 49140, "memory_free_mb": 100},
    ]
    assert caps["driver"] == "550.54.15" and caps["cuda"] == "12.4"
    assert fake.calls == ["init", "shutdown"]


def test_nvml_init_failure_is_cpu_with_one_debug_line(monkeypatch, caplog):
    monkeypatch.setattr(gpu, "_load_nvml", lambda: _fake_nvml([], init_error="NVML Shared Library Not Found"))
    with caplog.at_level(logging.DEBUG, logger=gpu.__name__):
        caps = gpu.probe_gpus()
    assert caps == {"accelerator": "cpu", "gpus": [], "driver": None, "cuda": None}
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.DEBUG


def test_nvml_query_failure_is_cpu(monkeypatch):
    fake = _fake_nvml([], query_error="GPU is lost")
    monkeypatch.setattr(gpu, "_load_nvml", lambda: fake)
    assert gpu.probe_gpus()["accelerator"] == "cpu"
    assert fake.calls == ["init", "shutdown"]


def test_pynvml_not_installed(monkeypatch):
    monkeypatch.setattr(gpu, "_load_nvml", lambda: None)
    assert gpu.capabilities()["gpus"] == []


def test_real_machine_capabilities():
    """This machine has no NVIDIA driver: the real pynvml import must end in CPU cleanly."""
    caps = gpu.capabilities()
    assert caps["accelerator"] in ("cpu", "cuda")
    assert set(caps) >= {"accelerator", "gpus", "driver", "cuda", "hostname", "versions", "job_types"}
    assert caps["job_types"] == ["train", "track"]
    assert caps["versions"]["sleap-nn"].startswith("0.3")
    assert caps["versions"]["sleap-io"] is not None
    assert caps["hostname"]
