"""Around a remote training, what SLEAP's own runner does (issue 20, item 6): the Inference
Target is read from the Train dialog, the LossViewer gets the plateau patience, and the end
is reported in SLEAP's own words. The full run (train, then predict remotely and merge) is
``test_gui_remote.py::test_end_to_end_remote_training_then_tracking``."""

from __future__ import annotations

import pytest

from fixtures_gui import main_window, project_path, qapp_module  # noqa: F401
from sleap_rtc_plugin.gui import packaging
from sleap_rtc_plugin.gui.dialogs.after_training import InferenceSummary, inference_request, plateau_settings, reset_loss_viewer, wants_inference

pytestmark = pytest.mark.gui


def _train_dialog(window, target: str):
    from sleap.gui.widgets.frame_target_selector import FrameTargetSelection

    from sleap_rtc_plugin.gui.plugin import show_dialog

    dialog = show_dialog(window, "train_remotely")
    dialog.pipeline_form_widget.set_form_data({"_pipeline": "single"})
    dialog.frame_target_selector.set_selection(FrameTargetSelection(target_key=target))
    return dialog


def test_the_inference_target_is_read_with_the_training_request(main_window):  # noqa: F811
    from sleap.gui.widgets.frame_target_selector import FrameTargetSelection

    dialog = _train_dialog(main_window, "video")
    try:
        request = dialog.collect()
        n = len(main_window.labels.videos[0])
        assert wants_inference(request)
        assert list(request.frames) == [0] and 0 < len(request.frames[0]) <= n and max(request.frames[0]) < n
        req = inference_request(request, [])
        assert req.frames == request.frames and req.inference_params == request.inference_params
        dialog.frame_target_selector.set_selection(FrameTargetSelection(target_key="nothing"))
        assert not wants_inference(dialog.collect())  # "Nothing": training only, as in SLEAP
    finally:
        dialog.close()


def test_the_loss_viewer_gets_the_plateau_patience_and_keeps_its_buttons(main_window):  # noqa: F811
    dialog = _train_dialog(main_window, "nothing")
    try:
        request = dialog.collect()
        settings = plateau_settings(request)
        expected = request.config_info_list[0].config.trainer_config.early_stopping.patience
        assert settings["what"] == "single_instance" and settings["plateau_patience"] == expected is not None
        hits = []
        dialog.cancel_job = lambda: hits.append("cancel")  # what the button must still reach after SLEAP's reset remade it
        viewer = dialog.open_loss_viewer(request)
        try:
            assert viewer.plateau_patience == expected
            viewer.cancel_button.click()
            assert hits == ["cancel"]
        finally:
            viewer.close()
    finally:
        dialog.close()


def test_the_end_is_told_in_sleaps_own_words(qapp_module):  # noqa: F811
    from sleap.gui.learning.runners import InferenceProgressDialog

    for total, found in ((6, 6), (6, 5), (1200, 3)):
        sleap_dialog = InferenceProgressDialog()
        sleap_dialog.setFinished(True, found, total)
        assert InferenceSummary(total, found, []).sleap_text() == sleap_dialog._label.text()
        sleap_dialog.close()


def test_a_predictions_package_for_the_new_model_names_the_target_frames(main_window, tmp_path):  # noqa: F811
    request = packaging.TrainingRequest(labels=main_window.labels, labels_filename=main_window.state["filename"], config_info_list=[],
                                        inference_params={"_prediction_mode": "add"}, items_for_inference=None, include_suggestions=False,
                                        num_user_labeled_frames=3, frames={0: [3, 4, 5]})
    req = inference_request(request, [tmp_path / "models" / "run1"])
    assert req.frame_count == 3 and req.model_dirs == [tmp_path / "models" / "run1"]
    assert req.frames is not request.frames  # the package writer fills its own outputs without touching the dialog's request
