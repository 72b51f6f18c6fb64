"""The sleap-nn flags SLEAP's own Run Inference derives from its dialog, for a remote job.

SLEAP's ``InferenceTask.make_predict_cli_call`` turns the inference settings a user sets
(peak threshold, batch size, max instances, the tracker and its options, overlap
filtering, "exclude user-labeled") into ``sleap predict`` arguments. A remote job must run
with the same settings, so the package asks SLEAP's own code for that list instead of
restating its mapping, and keeps the tuning flags. What the worker chooses is dropped:
data, frames, models, output -- and the device, since SLEAP's accelerator dropdown
describes this computer, not the worker. The worker checks what is left against its
allow-list (``jobspec/sleapnn_args.py``).
"""

from __future__ import annotations

from typing import Any

#: Flags of SLEAP's call that name what the worker decides, each with one value.
_WORKER_CHOOSES = frozenset({"--data_path", "--video_index", "--frames", "--model_paths", "-o", "--output_path", "--device"})


class _NoItem:
    """SLEAP's ``ItemForInference`` contributes only the data flags, which the worker sets."""

    cli_args: list[str] = []


def sleap_inference_flags(inference_params: dict[str, Any]) -> list[str]:
    """The tuning flags SLEAP's runner would pass sleap-nn for ``inference_params`` (the dialog's form data)."""
    from sleap.gui.learning.runners import InferenceTask

    task = InferenceTask(trained_job_paths=[], inference_params=dict(inference_params))
    args, _ = task.make_predict_cli_call(_NoItem(), output_path="-", gui=True)
    args = [str(a) for a in args]
    start = 3 if args[:3] == ["sleap", "predict", "--gui"] else 2
    flags: list[str] = []
    i = start
    while i < len(args):
        if args[i] in _WORKER_CHOOSES:
            i += 2
            continue
        flags.append(args[i])
        i += 1
    return flags
