"""Closing Train remotely mid-training detaches (never a silent cancel), quitting SLEAP
asks, and reopening the dialog follows the job to its end; the stages read in the
user's words (issue 20 items 2 and 7, issue 17 item 5).

Real everything: SLEAP's MainWindow offscreen, a `sleap-rtc worker` subprocess with its
embedded coordinator, real sleap-nn training on CPU.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request

import pytest

from fixtures_e2e import worker_process  # noqa: F401
from fixtures_gui import DOCS_IMAGES, main_window, project_path, qapp_module, run_qasync, wait_until  # noqa: F401

pytestmark = [pytest.mark.gui, pytest.mark.slow]

EPOCHS = 3
JARGON = re.compile(r"\b(via|direct|data channel|sctp|ice|candidate|MiB|receiving…)\b", re.IGNORECASE)


async def _wait_for(predicate, timeout: float = 300.0):
    await wait_until(predicate, timeout)


def _worker_status(worker) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.status_port}/status", timeout=10) as reply:
        return json.loads(reply.read())


def few_steps(tab, path) -> None:
    """Select a copy of the tab's profile with 2 steps per epoch (SLEAP's profiles ask for 200,
    and the form does not show the field), the way a user picks their own config file."""
    from omegaconf import OmegaConf
    from sleap.gui.learning import configs

    selected = tab._cfg_list_widget.getSelectedConfigInfo()
    if selected is None or not selected.path:
        return
    cfg = OmegaConf.load(selected.path)
    cfg.trainer_config.min_train_steps_per_epoch = 2
    OmegaConf.save(cfg, path)
    tab._cfg_list_widget._add_file_selection_to_menu(configs.ConfigFileInfo.from_config_file(str(path)))


def test_close_mid_training_detaches_quit_asks_and_reopening_follows_to_the_end(main_window, worker_process, tmp_path):  # noqa: F811
    from sleap_rtc_plugin.gui.dialogs.closing import BACK, CANCEL, KEEP, button
    from sleap_rtc_plugin.gui.plugin import show_dialog

    dialog = show_dialog(main_window, "train_remotely")
    from sleap.gui.widgets.frame_target_selector import FrameTargetSelection

    dialog.pipeline_form_widget.set_form_data({"_pipeline": "single"})
    dialog.frame_target_selector.set_selection(FrameTargetSelection(target_key="nothing"))  # training only
    panel = dialog.panel
    panel.session_string.setText(worker_process.session_string)
    assert panel.server_url.text() == worker_process.server_url  # the string's own coordinator
    for name, tab in dialog.tabs.items():  # SLEAP's defaults train for hours on a CPU
        few_steps(tab, tmp_path / f"few-steps.{name}.yaml")
        tab.set_fields_from_key_val_dict({
            "trainer_config.max_epochs": EPOCHS,
            "model_config.backbone_config.unet.filters": 8,
            "model_config.backbone_config.unet.max_stride": 8,
        })

    steps = {cfg.config.trainer_config.min_train_steps_per_epoch for cfg in dialog.collect().config_info_list}
    assert steps == {2}, steps

    async def scenario():
        dialog.submit()
        try:  # sleap-nn has started on the worker (its first progress message arrived)
            await _wait_for(lambda: dialog.busy and panel.job_stages is not None
                            and any(text.startswith("Training single_instance") for _, text in panel.job_stages.history))
        except AssertionError:
            history = panel.job_stages.history if panel.job_stages is not None else None
            box = dialog.last_message
            box_text = (box.windowTitle(), box.text(), box.detailedText()) if box is not None else None
            worker_lines = "".join(line for line in worker_process.output if "coordinator." not in line)[-3000:]
            raise AssertionError(f"no first epoch: busy={dialog.busy} status={panel.status.text()!r} history={history} "
                                 f"box={box_text} worker={worker_lines}") from None
        tracker = panel.job_stages
        # the upload ended full, in MB, and said where it went and how fast
        assert tracker.sent_words and re.fullmatch(r"sent \d+\.\d+ MB to .+ in \d+\.\d s \(\d+\.\d+ MB/s\)", tracker.sent_words[-1]), tracker.sent_words
        stages = [stage for stage, _ in tracker.history]
        assert stages.index("Packaging") < stages.index("Uploading") < stages.index("Training"), stages
        assert not [text for _, text in tracker.history if JARGON.search(text)], tracker.history
        assert tracker.view.stage.text() == "Training" and tracker.view.bar.maximum() == 1000
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        assert dialog.grab().save(str(DOCS_IMAGES / "train-remotely-training.png"))

        # quitting SLEAP asks; "Back" keeps everything as it was
        main_window.close()
        guard = main_window._sleap_rtc_quit_guard
        assert guard.question is not None and guard.question.isVisible()
        assert guard.question.defaultButton().text() == KEEP
        button(guard.question, BACK).click()
        assert dialog.busy

        # closing the dialog asks too; "Keep running remotely" detaches
        dialog.close()
        assert dialog.close_question is not None and dialog.close_question.isVisible() and dialog.busy
        button(dialog.close_question, KEEP).click()
        await _wait_for(lambda: not dialog.busy, timeout=60)
        assert not dialog.isVisible()
        assert dialog.detached is not None, panel.status.text()
        job_id = dialog.detached.job_id
        status = await asyncio.to_thread(_worker_status, worker_process)
        running = status["job"] is not None and status["job"]["id"] == job_id and status["job"]["state"] not in ("cancelled", "failed")
        assert running or job_id in status["outbox"], status  # still training, or done with its results waiting
        assert not dialog.model_dirs

        # reopening follows the same job to its end and installs the model
        assert show_dialog(main_window, "train_remotely") is dialog
        await _wait_for(lambda: dialog.busy, timeout=10)
        await _wait_for(lambda: not dialog.busy, timeout=600)
        assert dialog.model_dirs, panel.status.text()
        for d in dialog.model_dirs:
            assert (d / "best.ckpt").exists() and d.parent.name == "models"
        assert panel.job_stages.stage == "Done"
        assert panel.stages.bar.value() == panel.stages.bar.maximum()
        if dialog.last_message is not None:
            dialog.last_message.close()

        # quitting SLEAP during a second job: "Cancel the job" cancels it, then SLEAP closes
        dialog.submit()
        await _wait_for(lambda: dialog.busy and panel.job_stages is not None and panel.job_stages.stage == "Training")
        second = dialog.handle.job_id
        main_window.close()
        assert guard.question.isVisible() and not guard.closed
        button(guard.question, CANCEL).click()
        await _wait_for(lambda: guard.closed, timeout=120)
        assert not dialog.busy
        status = await asyncio.to_thread(_worker_status, worker_process)
        assert status["job"] is None or status["job"]["id"] != second or status["job"]["state"] == "cancelled", status
        assert second not in status["outbox"], status

    run_qasync(scenario(), timeout=900)
    if dialog.last_message is not None:
        dialog.last_message.close()
    dialog.close()
