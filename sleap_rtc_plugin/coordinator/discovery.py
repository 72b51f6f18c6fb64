"""Discovery over one room, indexed, with encoded ``peer_list`` bodies cached.

A scan of the room per ``discover`` cost the coordinator ~2 ms of CPU at 500 workers and
grew with the room; an institute's room holds thousands. Here each room keeps its peers
in buckets by (role, status), each bucket sorted by the discovery rank (most free GPU
memory first, then id), so a GPU-memory filter is a prefix found by bisection, the
"available first" order is a merge of already-sorted prefixes, and a limit stops the
walk early. Labels have an inverted index (``key=value`` → peer ids): a selective label
query reads only its candidates. Identical queries between two changes of the room are
answered from a cache of the encoded body; any change to the room (join, leave, status
or metadata update) empties it.

The scan in :mod:`presence` (``matches`` + ``rank``) stays the definition of the
result; the tests compare the two on random rooms.
"""

from __future__ import annotations

import heapq
import json
from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from ..protocol.coordinator import PeerList

if TYPE_CHECKING:
    from .peer_entry import PeerEntry

#: Bytes of encoded bodies one room may hold in its cache before it is emptied.
CACHE_BYTES_PER_ROOM = 4 * 1024 * 1024
#: Distinct cached queries per room (a hostile client varying filters cannot grow it).
CACHE_ENTRIES_PER_ROOM = 128


@dataclass(frozen=True)
class Query:
    """One discover's filters, hashable: the cache key (with the limit and byte budget)."""

    role: str | None = None
    status: str | None = None
    min_gpu_memory_mb: int | None = None
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, *, role: str | None = None, status: str | None = None, min_gpu_memory_mb: int | None = None, labels: dict[str, str] | None = None) -> Query:
        return cls(role, status, min_gpu_memory_mb, tuple(sorted((labels or {}).items())))


def peer_list_frame(peer_jsons: list[str], ref: str | None, *, truncated: bool) -> str:
    """A ``peer_list`` frame built from cached per-peer JSON; byte-for-byte what
    ``PeerList(...).encode()`` would produce, without re-serializing every peer."""
    return _head() + ",".join(peer_jsons) + _tail(ref, truncated)


def _head() -> str:
    return f'{{"type":"{PeerList.TYPE}","v":{PeerList.VERSION},"peers":['


def _tail(ref: str | None, truncated: bool) -> str:
    return f'],"ref":{json.dumps(ref)},"truncated":{json.dumps(truncated)}}}'


def _label_pairs(entry: PeerEntry) -> Iterator[tuple[str, str]]:
    """The ``labels`` a discover filter can match: string values only (filters are strings)."""
    labels = entry.metadata.get("labels")
    if isinstance(labels, dict):
        for key, value in labels.items():
            if isinstance(key, str) and isinstance(value, str):
                yield key, value


class RoomIndex:
    """The peers of one room and the indexes discovery reads. Synchronous, never awaits."""

    def __init__(self) -> None:
        self.peers: dict[str, PeerEntry] = {}
        #: (role, status) → sorted [(-free_gpu_mb, peer_id)]
        self._buckets: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self._keys: dict[str, tuple[tuple[str, str], tuple[int, str], tuple[tuple[str, str], ...]]] = {}
        self._labels: dict[tuple[str, str], set[str]] = {}
        self._cache: dict[tuple[Query, int, int], tuple[list[str], bool, str, int]] = {}
        self._cache_bytes = 0
        #: Bumped on every change; lets callers and tests see that the room moved.
        self.version = 0

    def __len__(self) -> int:
        return len(self.peers)

    # --- maintenance ------------------------------------------------------------------

    def add(self, entry: PeerEntry) -> None:
        old = self.peers.get(entry.peer_id)
        if old is not None:
            self.discard(old)
        self.peers[entry.peer_id] = entry
        bucket = (entry.role, entry.status)
        key = (-entry.free_gpu_mb, entry.peer_id)
        labels = tuple(_label_pairs(entry))
        insort(self._buckets.setdefault(bucket, []), key)
        for pair in labels:
            self._labels.setdefault(pair, set()).add(entry.peer_id)
        self._keys[entry.peer_id] = (bucket, key, labels)
        entry.index = self
        self._changed()

    def discard(self, entry: PeerEntry) -> bool:
        """Take ``entry`` out if it is the one indexed under its id; return whether it was."""
        if self.peers.get(entry.peer_id) is not entry:
            return False
        del self.peers[entry.peer_id]
        bucket, key, labels = self._keys.pop(entry.peer_id)
        keys = self._buckets[bucket]
        del keys[bisect_left(keys, key)]
        if not keys:
            del self._buckets[bucket]
        for pair in labels:
            ids = self._labels[pair]
            ids.discard(entry.peer_id)
            if not ids:
                del self._labels[pair]
        entry.index = None
        self._changed()
        return True

    def _changed(self) -> None:
        self.version += 1
        if self._cache:
            self._cache.clear()
            self._cache_bytes = 0

    # --- queries ----------------------------------------------------------------------

    def _label_candidates(self, query: Query) -> set[str] | None:
        """Ids carrying every label of ``query`` (None: the query has no labels)."""
        if not query.labels:
            return None
        sets = []
        for pair in query.labels:
            ids = self._labels.get(pair)
            if not ids:
                return set()
            sets.append(ids)
        sets.sort(key=len)
        return set(sets[0]).intersection(*sets[1:]) if len(sets) > 1 else sets[0]

    def _prefix(self, bucket: tuple[str, str], min_gpu: int | None) -> list[tuple[int, str]]:
        keys = self._buckets.get(bucket, [])
        if min_gpu is None or min_gpu <= 0:
            return keys
        return keys[: bisect_left(keys, (-min_gpu + 1,))]

    def find(self, query: Query, *, exclude: str | None = None, limit: int | None = None) -> list[PeerEntry]:
        """Peers matching ``query`` in rank order; at most ``limit`` of them."""
        if limit is not None and limit <= 0:
            return []
        roles = [query.role] if query.role is not None else sorted({r for r, _ in self._buckets})
        statuses = {s for _, s in self._buckets} if query.status is None else {query.status}
        first = [(r, "available") for r in roles if "available" in statuses]
        rest = [(r, s) for r in roles for s in sorted(statuses) if s != "available"]
        candidates = self._label_candidates(query)
        min_gpu = query.min_gpu_memory_mb
        found: list[PeerEntry] = []
        for group in (first, rest):
            prefixes = [p for b in group if (p := self._prefix(b, min_gpu))]
            ordered: Iterator[tuple[int, str]]
            if candidates is not None and 4 * len(candidates) < sum(map(len, prefixes)):
                # Few peers carry these labels: read them, not the buckets.
                buckets = set(group)
                ordered = iter(sorted(
                    key for bucket, key, _ in map(self._keys.__getitem__, candidates)
                    if bucket in buckets and (min_gpu is None or -key[0] >= min_gpu)
                ))
            elif len(prefixes) == 1:
                ordered = iter(prefixes[0])
            else:
                ordered = heapq.merge(*prefixes)
            for _, peer_id in ordered:
                if peer_id == exclude or (candidates is not None and peer_id not in candidates):
                    continue
                found.append(self.peers[peer_id])
                if limit is not None and len(found) >= limit:
                    return found
        return found

    def peer_list(self, query: Query, *, exclude: str | None, ref: str | None, limit: int, budget: int) -> str:
        """The encoded ``peer_list`` reply: at most ``limit`` peers and ``budget`` bytes of
        peers, ``truncated`` when more matched. Served from the cache when the room has
        not changed since the same query was answered."""
        cache_key = (query, limit, budget)
        cached = self._cache.get(cache_key)
        if cached is None:
            matched = self.find(query, limit=limit + 1)
            ids = [e.peer_id for e in matched]
            body, truncated = self._body(matched, limit, budget)
            cached = (ids, truncated, body, len(body))
            if len(self._cache) >= CACHE_ENTRIES_PER_ROOM or self._cache_bytes + len(body) > CACHE_BYTES_PER_ROOM:
                self._cache.clear()
                self._cache_bytes = 0
            self._cache[cache_key] = cached
            self._cache_bytes += len(body)
        ids, truncated, body, _ = cached
        if exclude is not None and exclude in ids:
            # The asker is among the first matches (a worker listing workers): answer it apart.
            body, truncated = self._body(self.find(query, exclude=exclude, limit=limit + 1), limit, budget)
        return _head() + body + _tail(ref, truncated)

    @staticmethod
    def _body(matched: list[PeerEntry], limit: int, budget: int) -> tuple[str, bool]:
        parts: list[str] = []
        size = 0
        for e in matched[:limit]:
            part = e.info_json()
            size += len(part) + 1
            if size > budget:
                break
            parts.append(part)
        return ",".join(parts), len(parts) < len(matched)

    def entries(self) -> list[PeerEntry]:
        return list(self.peers.values())


def describe(index: RoomIndex) -> dict[str, Any]:
    """Sizes of one room's indexes (for ``/health``-style stats and tests)."""
    return {
        "peers": len(index.peers),
        "buckets": {f"{r}/{s}": len(k) for (r, s), k in index._buckets.items()},
        "label_values": len(index._labels),
        "cached_queries": len(index._cache),
        "cached_bytes": index._cache_bytes,
    }
