"""Moved to :mod:`sleap_rtc_plugin.jobspec.archive` (the client reads result archives with it too); kept so worker imports stay valid."""

from ..jobspec.archive import (  # noqa: F401
    Limits,
    MB,
    check_entry_name,
    check_space,
    check_zip,
    extract,
    free_bytes,
)
