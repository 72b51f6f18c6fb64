"""Why a package was refused, as a stable code plus one actionable line.

Kept apart from package.py so the checks on what a package may hand sleap-nn
(sleapnn_args.py) and on what it may unpack (unpack.py) raise the same error
without importing each other.
"""

from __future__ import annotations

#: The package asks for something the worker will not do (a path outside the job, a flag).
BAD_PACKAGE = "bad_package"
#: The package unpacks past the worker's cap, or compresses like a zip bomb.
PACKAGE_TOO_LARGE = "package_too_large"
#: The worker's disk cannot hold the package: the worker's problem, not the job's.
DISK_FULL = "disk_full"


class PackageError(ValueError):
    """A package that cannot be run; ``str()`` is one actionable line.

    ``own_error`` is False when the refusal says nothing about the package itself
    (a full disk): a queued job then goes to another worker instead of failing.
    """

    def __init__(self, message: str, code: str = BAD_PACKAGE):
        super().__init__(message)
        self.code = code

    @property
    def own_error(self) -> bool:
        return self.code != DISK_FULL
