"""Moved to :mod:`sleap_rtc_plugin.jobspec.sleapnn_args` (the client checks a package's arguments before sending it); kept so worker imports stay valid."""

from ..jobspec.sleapnn_args import (  # noqa: F401
    COMMON_FLAGS,
    PACKAGE_PATH_KEYS,
    PREDICT_FLAGS,
    check_argv_paths,
    check_device,
    check_extra_args,
    check_training_config,
    frame_ranges,
    inside,
    safe_run_name,
)
