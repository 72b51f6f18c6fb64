"""The queue section of Train/Track remotely: what it turns into (issue 17 item 1)."""

from __future__ import annotations

import pytest

from fixtures_gui import qapp_module  # noqa: F401

pytestmark = pytest.mark.gui


def test_labels_with_globs_parse_and_bad_ones_say_why():
    from sleap_rtc_plugin.gui.dialogs.queue_options import parse_labels

    assert parse_labels("gpu=a100*, site=lab?; zone = b") == {"gpu": "a100*", "site": "lab?", "zone": "b"}
    assert parse_labels("  ") == {}
    with pytest.raises(ValueError, match="key=value"):
        parse_labels("gpu")
    with pytest.raises(ValueError, match="label key"):
        parse_labels("../x=1")


def test_the_box_becomes_queue_options_only_when_checked(qapp_module):  # noqa: F811
    from sleap_rtc_plugin.gui.dialogs.queue_options import QueueOptionsBox

    box = QueueOptionsBox()
    assert box.queue_options() is None and box.problem() is None
    assert box.fields.isHidden()  # folded while unchecked: the dialog stays SLEAP-sized
    box.setChecked(True)
    assert not box.fields.isHidden()
    box.min_gpu_memory.setValue(8192)
    box.gpu_count.setValue(2)
    box.priority.setValue(5)
    box.retries.setValue(1)
    box.labels.setText("gpu=a100*")
    q = box.queue_options()
    assert (q.min_gpu_memory_mb, q.gpu_count, q.priority, q.max_retries, q.labels) == (8192, 2, 5, 1, {"gpu": "a100*"})
    box.labels.setText("gpu")
    assert "key=value" in box.problem()
