"""The Slurm executor's pure parts: the batch script, Slurm's output parsed, the capacity
summary, settings; and ``jobwrap`` (the in-job relay) run for real on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from sleap_rtc_plugin.config import load_settings
from sleap_rtc_plugin.errors import UserError
from sleap_rtc_plugin.worker.slurm.capacity import parse_gpus, summarize
from sleap_rtc_plugin.worker.slurm.commands import parse_scontrol
from sleap_rtc_plugin.worker.slurm.execution import _Tail, sleap_nn_command
from sleap_rtc_plugin.worker.slurm.factory import executor_factory
from sleap_rtc_plugin.worker.slurm.options import SlurmOptions
from sleap_rtc_plugin.worker.slurm.script import render


def test_script_carries_the_settings_and_the_jobs_gpu_count(tmp_path):
    opts = SlurmOptions(partition="gpu", account="lab", qos="high", gres="gpu:a100:{gpus}", mem_mb=32000, time_limit="2:00:00",
                        extra_sbatch=("--constraint=a100",), python="/shared/venv/bin/python")
    text = render(opts, name="sleap-rtc-j1-centroid", state_dir=tmp_path / "s", cwd=tmp_path / "job dir", argv=["/x/python", "-m", "sleap_nn.cli", "train"], gpus=2)
    lines = text.splitlines()
    for want in ("--partition=gpu", "--account=lab", "--qos=high", "--gres=gpu:a100:2", "--mem=32000M", "--time=2:00:00",
                 "--constraint=a100", "--no-requeue", f"--output={tmp_path / 's' / 'stdout.log'}"):
        assert f"#SBATCH {want}" in lines, want
    assert lines[-1].startswith("exec /shared/venv/bin/python -P -m sleap_rtc_plugin.worker.slurm.jobwrap")
    assert lines[-1].endswith("-- /x/python -m sleap_nn.cli train")
    # No GPUs asked: no --gres at all (a CPU partition would refuse it).
    assert not [line for line in render(opts, name="n", state_dir=tmp_path, cwd=tmp_path, argv=["p"], gpus=0).splitlines() if "--gres" in line]
    with pytest.raises(ValueError, match="spans lines"):
        render(SlurmOptions(extra_sbatch=("--x\nrm -rf /",)), name="n", state_dir=tmp_path, cwd=tmp_path, argv=["p"])


def test_orphan_guard_is_dropped_for_a_compute_node():
    argv = ["/venv/python", "-P", "-m", "sleap_rtc_plugin.worker.orphan_guard", "1234", "train", "--config-name", "x"]
    assert sleap_nn_command(argv, "/shared/python") == ["/shared/python", "-P", "-m", "sleap_nn.cli", "train", "--config-name", "x"]


def test_scontrol_and_sinfo_output_are_parsed():
    line = ("JobId=42 JobName=sleap-rtc-j Priority=1 JobState=PENDING Reason=Resources Dependency=(null) ExitCode=0:0 "
            "NodeList=(null) Partition=gpu WorkDir=/groups/lab/my jobs/x StdOut=/s/stdout.log")
    f = parse_scontrol(line)
    assert (f["JobState"], f["Reason"], f["ExitCode"], f["Partition"]) == ("PENDING", "Resources", "0:0", "gpu")
    assert f["WorkDir"] == "/groups/lab/my jobs/x"  # a value with a space stays whole
    assert parse_gpus("gpu:a100:4(S:0-1),gpu:v100:2") == {"a100": 4, "v100": 2}
    assert parse_gpus("gpu:2") == {"gpu": 2} and parse_gpus("(null)") == {}
    rows = [
        {"node": "n1", "partition": "gpu", "state": "mixed", "gpus": {"a100": 4}, "used": {"a100": 3}},
        {"node": "n2", "partition": "gpu", "state": "idle", "gpus": {"a100": 4}, "used": {}},
        {"node": "n3", "partition": "gpu", "state": "down", "gpus": {"a100": 4}, "used": {}},
    ]
    caps = summarize(rows, SlurmOptions(gpu_memory_mb={"a100": 81920}))
    assert caps["accelerator"] == "cuda" and len(caps["gpus"]) == 4 and caps["gpus"][0]["memory_free_mb"] == 81920
    assert caps["slurm"]["partitions"] == [{"name": "gpu", "nodes": 3, "free_nodes": 1, "gpus": "a100:12", "free_gpus": "a100:5"}]
    from sleap_rtc_plugin.protocol.metadata import check_metadata

    check_metadata({**caps, "name": "w"})  # within the coordinator's metadata bounds


def test_settings_choose_the_executor_and_refuse_nonsense():
    assert executor_factory(load_settings(env={})) is None
    factory = executor_factory(load_settings(env={"SLEAP_RTC_WORKER_EXECUTOR": "slurm", "SLEAP_RTC_WORKER_SLURM_PARTITION": "gpu",
                                                  "SLEAP_RTC_WORKER_SLURM_STAGING_DIR": "/groups/x"}))
    assert factory.opts.partition == "gpu" and str(factory.staging_dir) == "/groups/x"
    with pytest.raises(UserError, match="use one of: local, slurm"):
        executor_factory(load_settings(env={"SLEAP_RTC_WORKER_EXECUTOR": "kubernetes"}))


def test_tail_reads_only_complete_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = _Tail(path)
    assert tail.read() == []
    path.write_bytes(b'{"a": 1}\n{"b"')
    assert tail.read() == [b'{"a": 1}']
    with open(path, "ab") as fh:
        fh.write(b": 2}\n")
    assert tail.read() == [b'{"b": 2}']


FAKE_TRAINER = r"""
import json, sys, time, zmq
pub_port = int(next(a.split("=")[1] for a in sys.argv if "publish_port" in a))
ctl_port = int(next(a.split("=")[1] for a in sys.argv if "controller_port" in a))
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB); pub.connect(f"tcp://127.0.0.1:{pub_port}")
ctl = ctx.socket(zmq.SUB); ctl.connect(f"tcp://127.0.0.1:{ctl_port}"); ctl.setsockopt_string(zmq.SUBSCRIBE, "")
time.sleep(0.3)
for epoch in range(1000):
    pub.send_string(json.dumps({"event": "epoch_end", "epoch": epoch}))
    if ctl.poll(100) and json.loads(ctl.recv_string()).get("command") == "stop":
        print("stopping early at", epoch, flush=True)
        sys.exit(0)
sys.exit(3)
"""


def test_jobwrap_relays_progress_to_a_file_and_stop_from_a_file(tmp_path):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    state = tmp_path / "state"
    state.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "sleap_rtc_plugin.worker.slurm.jobwrap", str(state), "--", sys.executable, str(script),
                             "++trainer_config.zmq.publish_port=1", "++trainer_config.zmq.controller_port=2"],
                            stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (state / "events.jsonl").exists() or not (state / "events.jsonl").read_text().strip():
            time.sleep(0.1)
        (state / "stop").touch()
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    events = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    assert events and events[0] == {"event": "epoch_end", "epoch": 0}
    assert "stopping early" in out and proc.returncode == 0
    assert (state / "exit_code").read_text() == "0"
