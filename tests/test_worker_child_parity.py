"""The worker starts sleap-nn the way SLEAP's own "Run Training" does (issue 21).

Both sides run their REAL code up to the moment they start the interpreter:
SLEAP's ``runners.run_gui_training`` (``sys.executable -m sleap.cli train ...``) and the
worker's ``TrainingJob`` on the package SLEAP's ``write_pipeline_files`` exported from the
same config. The interpreter is a recording shim (it writes its argv, environment,
niceness, CPU affinity and the config file it was pointed at, then exits 1), so no
training runs. Every difference must be one :mod:`sleap_rtc_plugin.worker.child_env`
declares deliberate; the effective config (the yaml plus the worker's Hydra overrides,
applied by Hydra's own parser) must match SLEAP's except where the run is written.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
import yaml

from fixtures_headless_data import make_video_labels
from sleap_rtc_plugin import sample_data
from sleap_rtc_plugin.worker import child_env
from sleap_rtc_plugin.worker.package import open_package
from sleap_rtc_plugin.worker.runner import ProcessFailed, TrainingJob

#: Keys that say where the run is written or how it reports, not how it trains.
WHERE = ("trainer_config.ckpt_dir", "trainer_config.run_name", "data_config.train_labels_path",
         "trainer_config.zmq.publish_port", "trainer_config.zmq.controller_port")

RECORDER = '''
import json, os, sys, shutil
args = sys.argv[1:]
out = os.environ["PARITY_RECORD"] + "." + str(len(os.listdir(os.path.dirname(os.environ["PARITY_RECORD"]))))
cfg = None
if "--config-dir" in args and "--config-name" in args:
    d, n = args[args.index("--config-dir") + 1], args[args.index("--config-name") + 1]
    src = os.path.join(d, n if n.endswith(".yaml") else n + ".yaml")
    cfg = open(src).read()
json.dump({"args": args, "env": dict(os.environ), "nice": os.nice(0), "cpus": sorted(os.sched_getaffinity(0)),
           "config": cfg}, open(out, "w"))
sys.exit(1)
'''


def _shim(folder: Path) -> Path:
    """An executable that stands in for the Python interpreter and records how it was started."""
    folder.mkdir(parents=True)
    shim = folder / "python"
    shim.write_text(f"#!{sys.executable}\n{RECORDER}")  # no shell in between: a shell sets PWD
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return shim


def _records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("rec.*"))]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _with_overrides(config_text: str, overrides: list[str]) -> dict:
    """The config sleap-nn's Hydra entry point would compose: the yaml plus ``overrides``."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(config_text)
    ConfigLoaderImpl._apply_overrides_to_config(OverridesParser.create().parse_overrides(overrides), cfg)
    return OmegaConf.to_container(cfg)


@pytest.fixture
def both_sides(tmp_path, monkeypatch):
    """(SLEAP's record, the worker's record, the worker's argv after the orphan guard)."""
    import asyncio

    import sleap_io as sio
    from omegaconf import OmegaConf
    from sleap.gui.learning import runners
    from sleap.gui.learning.configs import ConfigFileInfo

    from sleap_rtc_plugin.gui.packaging import TrainingRequest, write_training_package

    labels_path, _ = make_video_labels(tmp_path / "project", n_frames=8, labeled=6)
    labels = sio.load_slp(str(labels_path))
    config = sample_data.training_config("single_instance", labels_name=labels_path.name, node_names=["node0", "node1"])

    def infos() -> list:
        return [ConfigFileInfo(config=OmegaConf.create(config), head_name="single_instance")]

    shim = _shim(tmp_path / "shim")
    monkeypatch.setenv("PARITY_RECORD", str(tmp_path / "shim" / "rec"))
    # SLEAP's "Run Training" (no LossViewer: ports as it would have bound them).
    with monkeypatch.context() as patch:
        patch.setattr(sys, "executable", str(shim))
        runners.run_gui_training(str(labels_path), labels, infos(), {"controller_port": 9000, "publish_port": 9001}, gui=False)
    (sleap,) = _records(tmp_path / "shim")

    # The worker, on SLEAP's own export of the same config.
    request = TrainingRequest(labels=labels, labels_filename=str(labels_path), config_info_list=infos(), inference_params={},
                              items_for_inference=runners.ItemsForInference(items=[], total_frame_count=0),
                              include_suggestions=False, num_user_labeled_frames=len(labels.user_labeled_frames))
    package = write_training_package(request, tmp_path / "out")
    spec = open_package(package, tmp_path / "job" / "package")
    job = TrainingJob("parity", spec, python=str(shim), output_dir=tmp_path / "job" / "models")
    with pytest.raises(ProcessFailed):
        asyncio.run(job.run())
    worker = next(r for r in _records(tmp_path / "shim") if r is not sleap and r["args"] != sleap["args"])
    return sleap, worker


def test_worker_child_environment_is_sleaps_plus_only_the_declared_differences(both_sides):
    sleap, worker = both_sides
    # SLEAP's Popen(env=None) passes the C-level environment, where readline (loaded by a
    # library in this process) has put the terminal size; os.environ never sees it.
    dropped = set(sleap["env"]) - set(worker["env"]) - {"COLUMNS", "LINES"}
    assert not dropped, f"the worker drops {dropped}"
    changed = {k: v for k, v in worker["env"].items() if sleap["env"].get(k) != v}
    changed.pop("PARITY_RECORD", None)
    undeclared = {k: v for k, v in changed.items() if child_env.DELIBERATE_ENV.get(k) != v}
    assert not undeclared, f"undeclared difference in the sleap-nn child's environment: {undeclared}"
    assert not [k for k in changed if any(t in k for t in child_env.SPEED_VARIABLES)], "a thread/device variable differs"
    assert (worker["nice"], worker["cpus"]) == (sleap["nice"], sleap["cpus"])


def test_worker_argv_is_sleaps_command_and_effective_config(both_sides):
    sleap, worker = both_sides
    s_args, w_args = sleap["args"], worker["args"]
    # Interpreter flags before -m: SLEAP passes none; the worker only the declared ones.
    assert s_args[: s_args.index("-m")] == []
    assert w_args[: w_args.index("-m")] == list(child_env.DELIBERATE_FLAGS)
    # After the module (SLEAP: sleap.cli; worker: the orphan guard + its parent pid, which
    # then execs sleap_nn.cli -- sleap.cli's train IS sleap_nn.cli's train), the same subcommand.
    s_rest = s_args[s_args.index("sleap.cli") + 1:]
    w_rest = w_args[w_args.index("sleap_rtc_plugin.worker.orphan_guard") + 2:]
    assert s_rest[:1] == w_rest[:1] == ["train"]
    assert s_rest[1::2][:2] == w_rest[1::2][:2] == ["--config-name", "--config-dir"]
    overrides = w_rest[5:]
    sleap_cfg = _flat(yaml.safe_load(sleap["config"]))
    worker_cfg = _flat(_with_overrides(worker["config"], overrides))
    differing = {k for k in set(sleap_cfg) | set(worker_cfg) if sleap_cfg.get(k) != worker_cfg.get(k)}
    assert differing <= set(WHERE), {k: (sleap_cfg.get(k), worker_cfg.get(k)) for k in differing - set(WHERE)}
    assert worker_cfg["trainer_config.zmq.publish_port"] and worker_cfg["trainer_config.zmq.controller_port"]
