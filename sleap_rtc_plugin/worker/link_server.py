"""A worker's answer to one offer, up to an authenticated link.

Until the client has proven the room secret it is a stranger, and a stranger gets
little: its offer is decoded as a :class:`~..protocol.offer.PeerOffer` (a ``job_id``
that could name a folder outside the data dir is refused right there), nothing is
made on disk, the worker is *not* reserved (so silent offers cannot keep it from
honest clients), the whole way from offer to authenticated link is bounded by
``preauth_timeout`` seconds (a link caps pre-auth frames itself; see
:class:`~..peer.link.PeerLink`), and only a few such links may be in setup at once
(per client and in all), so a flood of offers cannot pile up peer connections. Only then does the worker reserve itself for a new
job, create the job's incoming folder and hand the link to :meth:`Worker._serve`.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ..peer.connection import accept
from ..peer.errors import AuthError
from ..protocol.base import ProtocolError
from ..protocol.coordinator import Relay
from ..protocol.names import child_path
from ..protocol.offer import PeerOffer, decode_offer
from ..protocol.peer import PeerError
from ..util.ratelimited_log import collapse_repeats
from .state import Status, WorkerBusy

if TYPE_CHECKING:
    from ..peer.link import PeerLink
    from .agent import Worker

#: What a remote client makes the worker log: repeats collapse (see util/ratelimited_log.py).
log = logging.getLogger(__name__)
collapse_repeats(log)

DEFAULT_PREAUTH_TIMEOUT = 15.0
#: Links being set up (offer seen, not yet authenticated) at once: per client, and in all.
MAX_PREAUTH_PER_CLIENT = 4
MAX_PREAUTH_LINKS = 16

_setting_up: "weakref.WeakKeyDictionary[Worker, Counter[str]]" = weakref.WeakKeyDictionary()  # per worker: client -> count


async def reject(worker: "Worker", client: str, code: str, message: str) -> None:
    log.info("rejected offer from %s: %s", client, message)
    assert worker.coordinator is not None
    await worker.coordinator.relay(client, "reject", {"code": code, "message": message})


async def _precheck(worker: "Worker", client: str, offer: PeerOffer) -> bool:
    """Answers that need no link: wrong dispatch, busy, unknown job. Changes nothing."""
    job_id = offer.job_id
    dispatch = worker._dispatches.get(job_id) if offer.intent == "submit" else None
    if dispatch is not None:
        if dispatch.client_id != client or worker._reservation != (client, job_id):
            await reject(worker, client, "not_dispatched", f"job {job_id} was dispatched to worker {worker.name} for another client")
            return False
    elif offer.intent == "submit" and worker.state.status is not Status.AVAILABLE:
        await reject(worker, client, "busy", worker.state.busy_message())
        return False
    elif offer.intent == "attach" and job_id not in worker.jobs and await asyncio.to_thread(worker.outbox.get, job_id) is None:
        await reject(worker, client, "unknown_job", f"worker {worker.name} has no job {job_id} (results already fetched, or it ran elsewhere)")
        return False
    return True


async def handle_offer(worker: "Worker", relay: Relay) -> None:
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


async def _answer(worker: "Worker", client: str, offer: PeerOffer, slot: _Slot) -> None:
    job_id, intent = offer.job_id, offer.intent
    try:
        incoming = child_path(worker.data_dir / "incoming", job_id)
    except ProtocolError as exc:
        await reject(worker, client, exc.code, exc.message)
        return
    dispatch = worker._dispatches.get(job_id) if intent == "submit" else None
    budget = worker.options.preauth_timeout
    deadline = asyncio.get_running_loop().time() + budget
    link_task = None
    try:
        answer, link_task = await accept(
            {"sdp": offer.offer.sdp, "type": offer.offer.type}, ice_servers=await worker.coordinator.ice_servers(worker.options.ice_servers), role="worker",
            peer_id=worker.peer_id or "", allow_loopback=worker.options.ice_loopback, fastpaths=worker.options.fastpaths, timeout=budget,
        )
        await worker.coordinator.relay(client, "answer", answer)
        link = await link_task
    except Exception as exc:  # noqa: BLE001 - a hostile SDP may break aiortc in any way; refuse, carry on
        log.warning("connection with %s failed: %s", client, str(exc)[:200] or type(exc).__name__)
        if link_task is not None and not link_task.done():
            link_task.cancel()
        if dispatch is not None:
            await worker._abandon_dispatch(dispatch, f"peer connection with client {client} failed: {exc}")
        return
    worker._links.add(link)
    reserved = dispatch is not None
    try:
        authenticated = await _authenticate(worker, link, client, incoming, deadline)
        slot.release()
        if not authenticated:
            return
        if dispatch is None and intent == "submit":
            try:
                worker.state.reserve(client)
            except WorkerBusy as exc:
                await link.send(PeerError(code="busy", message=str(exc), job_id=job_id))
                return
            worker._reservation = (client, job_id)
            reserved = True
        await worker._serve(link, client, intent, job_id, incoming)
    finally:
        worker._links.discard(link)
        if reserved and worker._reservation == (client, job_id):
            log.info("client %s left before submitting job %s; available again", client, job_id)
            if dispatch is not None and worker._dispatches.get(job_id) is dispatch:
                await worker._abandon_dispatch(dispatch, f"client {client} left before submitting the job")
            else:
                worker._release(client, job_id)
        if not link.closed.is_set():
            await link.close("session over")


async def _authenticate(worker: "Worker", link: "PeerLink", client: str, incoming: Path, deadline: float) -> bool:
    """The PSK handshake within what is left of the pre-auth budget; the incoming
    folder is recorded now and created by the link only once it succeeds."""
    link.accept_files(incoming, cache_dir=worker.data_dir / "cache", partial_dir=worker.data_dir / "partial",
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


__all__ = ["DEFAULT_PREAUTH_TIMEOUT", "handle_offer", "reject"]
