"""A worker's answer to one offer, up to an authenticated link.

Until the client has proven the room secret it is a stranger, and a stranger gets
little: its offer is decoded as a :class:`~..protocol.offer.PeerOffer` (a ``job_id``
that could name a folder outside the data dir is refused right there), nothing is
made on disk, the worker is *not* reserved (so silent offers cannot keep it from
honest clients), the whole way from offer to authenticated link is bounded by
``preauth_timeout`` seconds (a link caps pre-auth frames itself; see
:class:`~..peer.link.PeerLink`), and only a few such links may be in setup at once
(per client and in all), so a flood of offers cannot pile up peer connections. Only then does the worker reserve itself for a new
job, create the job's incoming folder and hand the link to :func:`serve`, the loop
that decodes each message of an authenticated link and hands it to the job's session.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from pathlib import Path
from typing import Protocol

from ..coordinator.client import CoordinatorClient
from ..peer.connection import accept
from ..peer.errors import AuthError, PeerLinkError
from ..peer.link import PeerLink
from ..protocol.base import ProtocolError
from ..protocol.coordinator import Relay
from ..protocol.names import child_path
from ..protocol.offer import PeerOffer, decode_offer
from ..protocol.peer import Attach, Control, JobStatus, JobSubmit, PeerError, ResultAck, ResultReleased
from ..protocol.queue import CheckpointNotice
from ..util.ratelimited_log import collapse_repeats
from .job_session import JobSession, drop_job_files, send_results
from .options import DEFAULT_PREAUTH_TIMEOUT
from .owners import OWNER_KEY, not_owner, owner_matches
from .queue_attempt import AttemptLookup, QueueAttempt, receive_resume
from .state import Status, WorkerBusy, WorkerState
from .submission import SubmissionHost, submit

#: What a remote client makes the worker log: repeats collapse (see util/ratelimited_log.py).
log = logging.getLogger(__name__)
collapse_repeats(log)

#: Links being set up (offer seen, not yet authenticated) at once: per client, and in all.
MAX_PREAUTH_PER_CLIENT = 4
MAX_PREAUTH_LINKS = 16


class LinkHost(SubmissionHost, AttemptLookup, Protocol):
    """What answering offers and serving links needs of the worker."""

    last_error: str | None

    @property
    def coordinator(self) -> CoordinatorClient | None: ...

    @property
    def peer_id(self) -> str | None: ...

    @property
    def secret(self) -> bytes | None: ...

    @property
    def state(self) -> WorkerState: ...

    @property
    def links(self) -> set[PeerLink]: ...

    def reserve(self, client: str, job_id: str, attempt: QueueAttempt | None = None) -> JobSession: ...

    def reserved_for(self, client: str, job_id: str) -> bool: ...

    def forget(self, session: JobSession) -> None: ...


_setting_up: "weakref.WeakKeyDictionary[LinkHost, Counter[str]]" = weakref.WeakKeyDictionary()  # per worker: client -> count


async def reject(worker: LinkHost, client: str, code: str, message: str) -> None:
    log.info("rejected offer from %s: %s", client, message)
    assert worker.coordinator is not None
    await worker.coordinator.relay(client, "reject", {"code": code, "message": message})


async def _precheck(worker: LinkHost, client: str, offer: PeerOffer) -> bool:
    """Answers that need no link: wrong dispatch, busy, unknown job. Changes nothing."""
    job_id = offer.job_id
    dispatch = worker.attempt_for(job_id) if offer.intent == "submit" else None
    if dispatch is not None:
        if dispatch.client_id != client or not worker.reserved_for(client, job_id):
            await reject(worker, client, "not_dispatched", f"job {job_id} was dispatched to worker {worker.name} for another client")
            return False
    elif offer.intent == "submit" and worker.state.status is not Status.AVAILABLE:
        await reject(worker, client, "busy", worker.state.busy_message())
        return False
    elif offer.intent == "attach" and job_id not in worker.sessions and await worker.outbox.aget(job_id) is None:
        await reject(worker, client, "unknown_job", f"worker {worker.name} has no job {job_id} (results already fetched, or it ran elsewhere)")
        return False
    return True


async def handle_offer(worker: LinkHost, relay: Relay) -> None:
    """Answer ``relay`` (kind ``offer``), authenticate the client, then serve the link."""
    assert worker.coordinator is not None and relay.source
    client = relay.source
    try:
        offer = decode_offer(relay.payload)
    except ProtocolError as exc:
        await reject(worker, client, "bad_offer", f"offer refused ({exc.code}): {exc.message}")
        return
    if not await _precheck(worker, client, offer):
        return
    pending = _setting_up.setdefault(worker, Counter())
    if pending[client] >= MAX_PREAUTH_PER_CLIENT or sum(pending.values()) >= MAX_PREAUTH_LINKS:
        await reject(worker, client, "too_many_offers", f"worker {worker.name} is already setting up {sum(pending.values())} connection(s) (at most "
                     f"{MAX_PREAUTH_PER_CLIENT} per client); try again in a few seconds")
        return
    slot = _Slot(pending, client)
    try:
        await _answer(worker, client, offer, slot)
    finally:
        slot.release()


class _Slot:
    """One link counted as "being set up" until it has authenticated (or failed to)."""

    def __init__(self, pending: Counter, client: str):
        self.pending, self.client, self.held = pending, client, True
        pending[client] += 1

    def release(self) -> None:
        if self.held:
            self.held = False
            self.pending[self.client] -= 1
            if self.pending[self.client] <= 0:
                del self.pending[self.client]


async def _answer(worker: LinkHost, client: str, offer: PeerOffer, slot: _Slot) -> None:
    job_id, intent = offer.job_id, offer.intent
    coordinator = worker.coordinator
    assert coordinator is not None  # offers arrive through it
    try:
        incoming = child_path(worker.data_dir / "incoming", job_id)
    except ProtocolError as exc:
        await reject(worker, client, exc.code, exc.message)
        return
    dispatch = worker.attempt_for(job_id) if intent == "submit" else None
    budget = worker.options.preauth_timeout
    deadline = asyncio.get_running_loop().time() + budget
    link_task = None
    try:
        answer, link_task = await accept(
            {"sdp": offer.offer.sdp, "type": offer.offer.type}, ice_servers=await coordinator.ice_servers(worker.options.ice_servers), role="worker",
            peer_id=worker.peer_id or "", allow_loopback=worker.options.ice_loopback, fastpaths=worker.options.fastpaths, timeout=budget,
        )
        await coordinator.relay(client, "answer", answer)
        link = await link_task
    except Exception as exc:  # noqa: BLE001 - a hostile SDP may break aiortc in any way; refuse, carry on
        log.warning("connection with %s failed: %s", client, str(exc)[:200] or type(exc).__name__)
        if link_task is not None and not link_task.done():
            link_task.cancel()
        if dispatch is not None:
            await dispatch.abandon(f"peer connection with client {client} failed: {exc}")
        return
    worker.links.add(link)
    reserved = dispatch is not None
    try:
        authenticated = await _authenticate(worker, link, client, incoming, deadline)
        slot.release()
        if not authenticated:
            return
        if dispatch is None and intent == "submit":
            try:
                worker.reserve(client, job_id)
            except WorkerBusy as exc:
                await link.send(PeerError(code="busy", message=str(exc), job_id=job_id))
                return
            reserved = True
        await serve(worker, link, client)
    finally:
        worker.links.discard(link)
        # The reservation must still be this link's: a requeued job's next attempt on this same
        # worker reserves the same client and job id while the old attempt's link is closing.
        if reserved and worker.reserved_for(client, job_id) and (dispatch is None or worker.attempt_for(job_id) is dispatch):
            log.info("client %s left before submitting job %s; available again", client, job_id)
            if dispatch is not None:
                await dispatch.abandon(f"client {client} left before submitting the job")
            else:
                worker.release(client, job_id)
        if not link.closed.is_set():
            await link.close("session over")


async def _authenticate(worker: LinkHost, link: PeerLink, client: str, incoming: Path, deadline: float) -> bool:
    """The PSK handshake within what is left of the pre-auth budget; the incoming
    folder is recorded now and created by the link only once it succeeds."""
    await link.accept_files(incoming, cache_dir=worker.data_dir / "cache", partial_dir=worker.data_dir / "partial",
                      max_size=worker.options.max_file_bytes, cache_max_bytes=worker.options.cache_max_bytes)
    left = deadline - asyncio.get_running_loop().time()
    try:
        await asyncio.wait_for(link.authenticate(worker.secret), max(0.1, left))
    except AuthError as exc:
        worker.last_error = f"client {client} failed authentication: {exc}"
        return False
    except (TimeoutError, asyncio.TimeoutError):
        budget = worker.options.preauth_timeout
        log.warning("client %s did not authenticate within %g s of its offer; link closed", client, budget)
        worker.last_error = f"client {client} did not authenticate within {budget:g} s"
        if not link.closed.is_set():
            await link.close(f"not authenticated within {budget:g} s")
        return False
    return True


# -- one authenticated link ---------------------------------------------------------
async def serve(worker: LinkHost, link: PeerLink, client: str) -> None:
    while not link.closed.is_set():
        try:
            msg = await link.recv()
        except PeerLinkError:
            break
        if isinstance(msg, JobSubmit):
            await submit(worker, link, client, msg)
        elif isinstance(msg, Attach):
            await _attach(worker, link, msg)
        elif isinstance(msg, Control):
            await _control(worker, link, msg)
        elif isinstance(msg, CheckpointNotice):
            await receive_resume(worker, link, client, msg)
        elif isinstance(msg, ResultAck):
            await _ack(worker, link, client, msg)
    for session in worker.sessions.values():
        session.followers.discard(link)


async def _owner_of(worker: LinkHost, job_id: str) -> tuple[bool, str | None]:
    """(known, owner hash) of a job, running or parked in the outbox (which outlives a restart)."""
    session = worker.sessions.get(job_id)
    if session is not None:
        return True, session.owner_sha256
    entry = await worker.outbox.aget(job_id)
    if entry is not None:
        return True, entry.metadata.get(OWNER_KEY)
    return False, None


async def _attach(worker: LinkHost, link: PeerLink, msg: Attach) -> None:
    job_id = msg.job_id
    known, owner = await _owner_of(worker, job_id)
    if known and not owner_matches(owner, msg.owner):
        log.warning("refused an attach to job %s: wrong owner credential", job_id)
        await link.send(not_owner(job_id, "attach to"))
        return
    session = worker.sessions.get(job_id)
    if session is not None and session.live:
        await session.attach(link)
        return
    if await worker.outbox.aget(job_id) is not None:
        await link.send(JobStatus(job_id=job_id, state="succeeded", message="job finished earlier; sending results"))
        worker.spawn(send_results(worker, link, job_id))
        return
    await link.send(PeerError(code="unknown_job", message=f"worker {worker.name} has no job {job_id}", job_id=job_id))


async def _control(worker: LinkHost, link: PeerLink, msg: Control) -> None:
    session = worker.sessions.get(msg.job_id)
    if session is None or session.engine is None or not session.live:
        await link.send(PeerError(code="unknown_job", message=f"no running job {msg.job_id} on this worker", job_id=msg.job_id))
        return
    if not owner_matches(session.owner_sha256, msg.owner):
        log.warning("refused a %s of job %s: wrong owner credential", msg.command, msg.job_id)
        await link.send(not_owner(msg.job_id, msg.command))
        return
    await session.control(link, msg.command)


async def _ack(worker: LinkHost, link: PeerLink, client: str, msg: ResultAck) -> None:
    """Drop the outbox copy, only for the job's owner: an ack deletes hours of GPU work."""
    known, owner = await _owner_of(worker, msg.job_id)
    if known and not owner_matches(owner, msg.owner):
        log.warning("refused a result_ack of job %s from %s: wrong owner credential", msg.job_id, client)
        await link.send(not_owner(msg.job_id, "acknowledge (and so delete) the results of"))
        return
    if await worker.outbox.aget(msg.job_id) is not None:
        session = worker.sessions.get(msg.job_id)
        if session is not None:
            await session.acknowledge()
            worker.forget(session)
        else:
            await drop_job_files(worker, msg.job_id)
        log.info("job %s: results acknowledged by %s; outbox entry removed", msg.job_id, client)
    await link.send(ResultReleased(job_id=msg.job_id))


__all__ = ["DEFAULT_PREAUTH_TIMEOUT", "LinkHost", "handle_offer", "reject", "serve"]
