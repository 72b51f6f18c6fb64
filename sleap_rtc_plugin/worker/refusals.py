"""Moved to :mod:`sleap_rtc_plugin.jobspec.refusals` (the client reports the same refusals); kept so worker imports stay valid."""

from ..jobspec.refusals import (  # noqa: F401
    BAD_PACKAGE,
    DISK_FULL,
    PACKAGE_TOO_LARGE,
    PackageError,
)
