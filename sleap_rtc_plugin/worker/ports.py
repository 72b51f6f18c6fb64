"""What the parts of the worker need of the :class:`~.agent.Worker` that composes them.

The worker's parts (banner, link server, job session, queue attempt, submission, Slurm
adoption) are called *by* the agent with the worker itself. Each states the narrow
surface it uses as a structural type instead of importing :mod:`.agent`, so the agent
imports its parts and nothing imports the agent back (the ``acyclic_siblings``
contract in pyproject.toml). mypy checks, where the agent passes ``self``, that the
Worker really offers each surface.

The shared pieces live here; a part whose surface names its own types (a
:class:`~.job_session.JobSession`, a :class:`~.queue_attempt.QueueAttempt`) declares
that surface in its own module: ``SessionHost``, ``AttemptHost``, ``SubmissionHost``,
``LinkHost``, ``AdoptHost``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..util.status_server import StatusServer

T = TypeVar("T")


class Spawns(Protocol):
    """Starts background work the worker keeps a reference to (and cancels on stop)."""

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]: ...


class BannerSource(Protocol):
    """What the start-up banner shows (:mod:`.banner`)."""

    @property
    def name(self) -> str: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def capabilities(self) -> dict[str, Any]: ...

    @property
    def server_url(self) -> str | None: ...

    @property
    def embedded(self) -> object:
        """Truthy when the coordinator runs inside this worker."""

    @property
    def room_id(self) -> str | None: ...

    @property
    def token(self) -> str | None: ...

    @property
    def secret(self) -> bytes | None: ...

    @property
    def peer_id(self) -> str | None: ...

    @property
    def status_server(self) -> StatusServer | None: ...

    @property
    def enrolled(self) -> bool: ...

    def session_string(self) -> str: ...


__all__ = ["BannerSource", "Spawns"]
