"""``worker.executor`` → the executor factory a :class:`~..options.WorkerOptions` carries.

Beside :mod:`.options` and :mod:`.execution` rather than in either, so the settings
module does not import the executor that imports it.
"""

from __future__ import annotations

from typing import Any, Callable

from ...errors import UserError
from .options import EXECUTORS, SlurmOptions


def executor_factory(settings: Any) -> Callable[..., Any] | None:
    """The ``WorkerOptions.executor_factory`` for ``worker.executor``; None = local."""
    name = str(settings.get("worker.executor") or "local")
    if name not in EXECUTORS:
        raise UserError(f"worker.executor is {name!r}; use one of: {', '.join(EXECUTORS)}")
    if name == "local":
        return None
    from .execution import SlurmExecutorFactory  # only a Slurm worker loads the executor

    return SlurmExecutorFactory(SlurmOptions.from_settings(settings))
