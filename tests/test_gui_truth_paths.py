"""A returned model speaks of the client's disk: SLEAP's own Run Training then trains into
the project's ``models/``, never into the worker's job folder (issue 20, item 1).

The model is a real sleap-nn run (``trained_model``), trained in a "worker" folder and
installed through the same ``install_results`` the CLI and the GUI use.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from fixtures_data import sample_labels, sample_root, trained_model, training_package  # noqa: F401
from fixtures_gui import main_window, project_path, qapp_module, sleap_run_training_with  # noqa: F401
from sleap_rtc_plugin.client.results import install_results
from sleap_rtc_plugin.protocol.peer import ResultFile

pytestmark = pytest.mark.gui


def _model_zip(run_dir: Path, out: Path) -> Path:
    archive = shutil.make_archive(str(out / run_dir.name), "zip", root_dir=run_dir.parent, base_dir=run_dir.name)
    return Path(archive)


def _install(trained, project_dir: Path, tmp_path: Path) -> Path:
    zip_path = _model_zip(trained.run_dir, tmp_path)
    meta = ResultFile(name=zip_path.name, size=zip_path.stat().st_size, sha256=hashlib.sha256(zip_path.read_bytes()).hexdigest())
    outcome = install_results([(meta, zip_path)], project_dir, "job1", "train", "worker1")
    return outcome.model_dirs[0]


def test_installed_config_names_no_worker_path(trained_model, tmp_path):  # noqa: F811
    project = tmp_path / "project"
    project.mkdir()
    (project / "blobs.slp").write_bytes(b"")  # the project's labels file the package was made from
    run_dir = _install(trained_model, project, tmp_path)
    worker_side = str(trained_model.job_dir)
    assert worker_side in (trained_model.run_dir / "training_config.yaml").read_text()  # the worker wrote its own paths
    for name in ("training_config.yaml", "initial_config.yaml"):
        text = (run_dir / name).read_text()
        assert worker_side not in text, name
    cfg = yaml.safe_load((run_dir / "training_config.yaml").read_text())
    assert cfg["trainer_config"]["ckpt_dir"] == (project / "models").as_posix()
    assert cfg["trainer_config"]["run_name"] == run_dir.name
    assert cfg["data_config"]["train_labels_path"] == [(project / "blobs.slp").as_posix()]
    again = _install(trained_model, project, tmp_path)  # a clash gets "-1": run_name follows the dir
    assert again.name.endswith("-1")
    assert yaml.safe_load((again / "training_config.yaml").read_text())["trainer_config"]["run_name"] == again.name


def test_sleap_run_training_prefills_the_projects_models_folder(main_window, trained_model, tmp_path):  # noqa: F811
    project_dir = Path(main_window.state["filename"]).parent
    run_dir = _install(trained_model, project_dir, tmp_path)
    runs_folder, configs = sleap_run_training_with(main_window, run_dir)
    assert Path(runs_folder) == project_dir / "models"  # "Runs Folder"
    assert configs
    for info in configs:  # what a local training would run with
        assert Path(info.config.trainer_config.ckpt_dir) == project_dir / "models"
        assert str(trained_model.job_dir) not in str(info.config.data_config.train_labels_path)
