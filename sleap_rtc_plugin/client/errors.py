"""The one error type of the submitting side (kept apart so small client modules can raise it)."""

from __future__ import annotations


class RemoteError(Exception):
    """A remote job could not be done; ``code`` is stable, ``str()`` says what to do next."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
