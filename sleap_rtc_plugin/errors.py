"""Errors shared across the package."""


class UserError(Exception):
    """Something the user can fix; the CLI prints it as one line without a traceback."""

    exit_code = 1
