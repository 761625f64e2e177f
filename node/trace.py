"""``GET /v1/records/{id}/trace`` (PROTOCOL §6): a record's ancestry with a
proof bundle per record, and one page of its direct children.

Anyone may name any committed record as a parent, so a record's children
are unbounded and one party can grow another's trace at will.  Every answer
is therefore bounded: children come in pages read by a range scan from a
cursor (the children index is keyed ``parent || child``, so a page costs
its own size, not the record's fan-out), and the ancestry walk stops at a
number of bundles and a number of bytes, naming the ancestors it did not
reach (``frontier``) so that a client continues from them.

The walk runs on the event loop in slices, yielding between them, rather
than in a worker thread: the chain's read path fills caches that a commit
on the loop rewrites (``ledger.log`` keeps no locks), so reads must stay on
the loop's thread.  A slice is a few bundles, and only a few walks at a
time go past their first slice, so ``/v1/status`` and the other routes are
answered between slices of large traces.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from ledger.chain import ChainStore
from ledger.encoding import to_hex
from ledger.errors import StorageCorruption
from ledger.proofs_breakers import breaker_of, breaker_proof, trip_in_force
from ledger.proofs_verdicts import build_served_bundle
from ledger.records import Record, decode_committed_envelope
from ledger.verdicts import decode_verdict
from ledger.encoding import from_b64

# Children per page when the client does not say, and at most.
CHILDREN_DEFAULT = 100
CHILDREN_MAX = 1000
# Bytes of bundles and edges (compact JSON) per answer; the record's own
# bundle is always included.  A few hundred records of a four-validator chain.
MAX_TRACE_BYTES = 1 << 20
# Bundles built between two yields to the event loop.
SLICE_BUNDLES = 16
# Walks past their first slice at once, per node (see build_trace).
TRACE_BUILDERS = 2
# One edge in the answer: ["<64 hex>","<64 hex>"], and a comma.
EDGE_BYTES = 2 * 64 + 8


@dataclass(frozen=True)
class TraceQuery:
    record: bytes
    depth: int
    children_limit: int = CHILDREN_DEFAULT
    children_after: bytes | None = None


@dataclass(frozen=True)
class TraceLimits:
    max_nodes: int
    max_bytes: int = MAX_TRACE_BYTES


async def build_trace(chain: ChainStore, query: TraceQuery, limits: TraceLimits,
                      gate: asyncio.Semaphore | None = None) -> dict[str, Any]:
    """The trace answer for committed record ``query.record`` (the caller
    has checked that it is committed).

    A walk longer than one slice takes a slot of ``gate`` before its second
    slice: every concurrent walk runs one slice per turn of the event loop,
    so the slots bound how long other requests wait between turns, while
    traces of a slice or less (the common case) never wait for a slot.
    """
    async with _Slot(gate) as slot:
        return await _walk(chain, query, limits, slot)


async def _walk(chain: ChainStore, query: TraceQuery, limits: TraceLimits,
                slot: _Slot) -> dict[str, Any]:
    bundles: list[dict[str, Any]] = []
    edges: list[tuple[bytes, bytes]] = []
    breakers: list[dict[str, Any]] = []  # the trips of records a breaker sent to review
    links: list[bytes] = []              # the alerts those trips name
    included: set[bytes] = set()
    seen = {query.record}
    queue: deque[tuple[bytes, int]] = deque([(query.record, 0)])
    size = 0
    truncated = False
    while queue:
        current, level = queue[0]
        if len(bundles) >= limits.max_nodes:
            truncated = True
            break
        bundle = build_served_bundle(chain, chain.membership, current)
        record = _record(chain, current)
        parents = record.parents
        trip = _trip(chain, bundle, record)
        cost = len(orjson.dumps(bundle)) + EDGE_BYTES * len(parents) \
            + (len(orjson.dumps(trip[0])) if trip is not None else 0)
        if bundles and size + cost > limits.max_bytes:
            truncated = True
            break
        queue.popleft()
        size += cost
        bundles.append(bundle)
        included.add(current)
        for parent in parents:
            edges.append((current, parent))
            if level < query.depth and parent not in seen:
                seen.add(parent)
                queue.append((parent, level + 1))
        if trip is not None:
            # The alerts that tripped the breaker are walked like parents.
            proof, alerts = trip
            breakers.append(proof)
            links.extend(alerts)
            for alert in alerts:
                if level < query.depth and alert not in seen:
                    seen.add(alert)
                    queue.append((alert, level + 1))
        if len(bundles) % SLICE_BUNDLES == 0 and queue:
            await slot.take()
            await asyncio.sleep(0)
    frontier = dict.fromkeys(r for r in [p for _, p in edges] + links if r not in included)
    page = chain.children(query.record, limit=query.children_limit + 1,
                          after=query.children_after)
    doc: dict[str, Any] = {
        "record": to_hex(query.record), "bundles": bundles,
        "edges": [[to_hex(child), to_hex(parent)] for child, parent in edges],
        "children": [to_hex(c) for c in page[:query.children_limit]],
        "frontier": [to_hex(p) for p in frontier],
    }
    if breakers:
        doc["breakers"] = breakers
    if len(page) > query.children_limit:
        doc["children_next"] = doc["children"][-1]
    if truncated:
        doc["truncated"] = True
    return doc


class _Slot:
    """A slot of a semaphore taken on first need, released on exit."""

    def __init__(self, gate: asyncio.Semaphore | None) -> None:
        self._gate = gate
        self._held = False

    async def take(self) -> None:
        if self._gate is not None and not self._held:
            await self._gate.acquire()
            self._held = True

    async def __aenter__(self) -> _Slot:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._held and self._gate is not None:
            self._gate.release()
            self._held = False


def _record(chain: ChainStore, record_id: bytes) -> Record:
    raw = chain.envelope(record_id)
    if raw is None:  # an ancestor of a committed record is committed
        raise StorageCorruption(f"ancestor {to_hex(record_id)} is not stored")
    # A committed envelope, maybe multi-signed (governance, PROTOCOL §9.2):
    # decode_envelope refuses those, as admission does.
    return decode_committed_envelope(raw).record


def _trip(chain: ChainStore, bundle: dict[str, Any],
          record: Record) -> tuple[dict[str, Any], tuple[bytes, ...]] | None:
    """For a record a breaker sent to review: the proof of the trip in force
    at its block (``{"record", ...}``, PROTOCOL §6) and the alerts it names."""
    proven = bundle.get("verdict")
    if proven is None:
        return None
    breaker = breaker_of(decode_verdict(from_b64(proven["entry"])), record)
    if breaker is None:
        return None
    trip = trip_in_force(chain.breakers.transitions, *breaker, before=bundle["height"])
    proof = breaker_proof(chain, trip) if trip is not None else None
    if trip is None or proof is None:
        return None  # a trip below a state-sync snapshot, or from before breaker entries
    return {"record": to_hex(record.id), **proof}, trip.records
