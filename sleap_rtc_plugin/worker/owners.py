"""Job owner credentials on the worker side.

The room secret lets a client use a worker; it does not make every job in the room
that client's. At submit the client hands over a fresh owner credential; the worker
keeps only its sha256 (with the running job, and in the outbox manifest so it outlives
a restart) and asks for the credential again before it lets a link follow the job,
stop or cancel it, or acknowledge (and so delete) its results. Hashes are compared
with :func:`hmac.compare_digest`, so timing tells an attacker nothing.
"""

from __future__ import annotations

import hashlib
import hmac

from ..protocol.peer import PeerError

#: Key of the owner's hash in an outbox entry's manifest metadata.
OWNER_KEY = "owner_sha256"
#: Shortest credential accepted at submit (``secrets.token_urlsafe(32)`` gives 43).
MIN_OWNER_CHARS = 16


def owner_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def owner_matches(stored_hash: str | None, presented: str) -> bool:
    """True when ``presented`` is the credential whose hash is ``stored_hash``.

    A job with no recorded owner (an outbox entry written before owners existed) is
    anyone's, as it was then; every job submitted since has one.
    """
    if stored_hash is None:
        return True
    candidate = owner_hash(presented) if presented else ""
    return hmac.compare_digest(candidate.encode(), str(stored_hash).encode())


def not_owner(job_id: str, action: str) -> PeerError:
    return PeerError(
        code="not_owner",
        message=(f"job {job_id} was submitted by another client: to {action} it, use the owner credential it was submitted with "
                 "(run the client from the project folder that submitted it, or pass --project-dir)"),
        job_id=job_id,
    )


def owner_required(job_id: str) -> PeerError:
    return PeerError(code="owner_required", message=f"job {job_id} has no owner credential; upgrade sleap-rtc-plugin on the client", job_id=job_id)
