"""Fixtures for the GUI tests: one offscreen SLEAP MainWindow per module, a saved project.

Qt must be told to render offscreen, and SLEAP must not re-exec the interpreter,
before anything imports Qt -- hence the environment set at import time.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SLEAP_SKIP_QT_FIX", "1")

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Screenshots for the docs: refreshed only when asked (SLEAP_RTC_UPDATE_SCREENSHOTS=1), so a test
# run never dirties the checkout; otherwise they are still rendered and saved, to a temp folder.
DOCS_IMAGES = (
    Path(__file__).resolve().parents[1] / "docs" / "images"
    if os.environ.get("SLEAP_RTC_UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "sleap-rtc-screenshots"
)


def make_project(folder: Path, n_frames: int = 6) -> Path:
    """A saved SLEAP project: an image-sequence video, a 2-node skeleton, 3 labeled frames."""
    import imageio.v3 as iio
    import sleap_io as sio

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(n_frames):
        path = folder / f"frame{i:03d}.png"
        iio.imwrite(path, rng.integers(0, 255, (64, 64), dtype=np.uint8))
        files.append(str(path))
    video = sio.Video.from_filename(files)
    skeleton = sio.Skeleton(["head", "tail"], edges=[("head", "tail")])
    frames = [
        sio.LabeledFrame(
            video=video,
            frame_idx=i,
            instances=[sio.Instance.from_numpy(np.array([[10.0 + i, 12.0], [30.0, 40.0 - i]]), skeleton=skeleton)],
        )
        for i in range(3)
    ]
    labels = sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skeleton])
    path = folder / "project.slp"
    labels.save(str(path))
    return path


@pytest.fixture(scope="module")
def qapp_module():
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    # No window is shown for real here; closing a LossViewer must not quit the loop.
    app.setQuitOnLastWindowClosed(False)
    return app


@pytest.fixture(scope="module")
def project_path(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("project"))


def run_qasync(coro, timeout: float = 120.0):
    """Run ``coro`` on a qasync loop driving the QApplication, as the launcher does."""
    import asyncio

    from qtpy.QtWidgets import QApplication

    from sleap_rtc_plugin.gui.qt_async import install_event_loop

    loop = install_event_loop(QApplication.instance())
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


@pytest.fixture(scope="module")
def main_window(request, qapp_module, project_path):
    """SLEAP's real MainWindow with this project loaded and the plugins installed.

    A test module may set ``EXTRA_PLUGINS`` to register more plugins programmatically.
    """
    from sleap_rtc_plugin.gui import launcher

    args = launcher.sleap_app.create_sleap_label_parser().parse_args([str(project_path), "--no-usage-data"])
    window, host = launcher.build_window(args, plugins=getattr(request.module, "EXTRA_PLUGINS", ()))
    window.resize(1200, 800)
    yield window
    for child in list(window._child_windows.values()):
        if child is not None:
            child.close()
    window.state["has_changes"] = False
    stop_qt_threads(window)
    window.close()


def stop_qt_threads(window) -> None:
    """Stop SLEAP's frame-loader thread (and any other QThread) before Python exits.

    SLEAP stops it only from ``atexit``/``destroyed``; a QThread object collected while
    its thread runs aborts the interpreter ("QThread: Destroyed while thread is still
    running"), which would turn a green test run into exit code 134.
    """
    from qtpy.QtCore import QThread

    player = getattr(window, "player", None)
    if player is not None and hasattr(player, "cleanup"):
        player.cleanup()
    for thread in window.findChildren(QThread):
        thread.quit()
        thread.wait(5000)
    close_event_loop()


def close_event_loop() -> None:
    """Close the qasync loop: its default executor runs ``asyncio.to_thread`` work on QThreads."""
    import asyncio

    import qasync

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return
    if isinstance(loop, qasync.QEventLoop) and not loop.is_closed() and not loop.is_running():
        loop.close()
        asyncio.set_event_loop(None)


def sleap_run_training_with(window, run_dir: Path) -> tuple[str, list]:
    """Open SLEAP's own Run Training dialog, pick the model in ``run_dir`` as a user would and
    touch its tab (SLEAP copies a tab's values into the pipeline form on any edit).
    Returns the "Runs Folder" it then shows and the configs a local training would run."""
    from sleap.gui.learning.dialog import LearningDialog

    dialog = LearningDialog("training", window.state["filename"], window.labels, parent=window)
    try:
        picked = False
        for tab in dialog.tabs.values():
            widget = tab._cfg_list_widget
            for idx in range(widget.count() if widget is not None else 0):
                info = widget.getConfigInfoByMenuIdx(idx)
                if info is not None and Path(info.path).parent == run_dir:
                    widget.setCurrentIndex(idx)
                    widget.onSelectionIdxChange(idx)
                    dialog.on_tab_data_change(tab.head)
                    picked = True
        assert picked, f"SLEAP's Run Training does not list {run_dir}"
        form = dialog.pipeline_form_widget.get_form_data()
        return form["trainer_config.ckpt_dir"], dialog.get_every_head_config_data(form)
    finally:
        dialog.close()


async def wait_until(predicate, timeout: float, what: str = "condition") -> None:
    """Poll ``predicate`` on the running (qasync) loop until it holds; fail after ``timeout`` s."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        await asyncio.sleep(0.05)
