"""Following a record's trace across the node's bounded answers.

A node answers ``GET /v1/records/{id}/trace`` with at most one page of
direct children and an ancestry cut at its depth and size bounds, naming
where it stopped (``children_next``, ``frontier``; PROTOCOL §6).  This
module asks again from those points and merges the answers into one
document of the same shape, so callers see the whole lineage - up to
caps, because a record's fan-out and ancestry are set by whoever submits
records, not by the caller.

Nothing here is verified: the auditor checks every bundle and every edge
against the signed records (``client.audit.remote``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ledger.breaker_entries import BreakerEntryError, decode_breaker_entry
from ledger.encoding import from_b64
from ledger.errors import BadEncoding

# Ancestry bundles collected before giving up, and direct children listed.
DEFAULT_MAX_RECORDS = 10_000
DEFAULT_MAX_CHILDREN = 10_000
# The largest depth asked for in one request: the node's default bound
# (``limits.max_trace_depth``); deeper asks go without a depth, take what
# the node's bound gives, and drop what lies beyond the depth asked.
REQUEST_DEPTH = 64
# Children asked for per request: the node's largest page (a version 1
# node ignores the parameter and lists every child at once).
CHILDREN_PAGE = 1000

# fetch(record_id, depth or None, children_limit, children_after or None)
Fetch = Callable[[str, int | None, int, str | None], Awaitable[Mapping[str, Any]]]


async def follow_trace(fetch: Fetch, record_id: str, depth: int | None = None, *,
                       max_records: int = DEFAULT_MAX_RECORDS,
                       max_children: int = DEFAULT_MAX_CHILDREN) -> dict[str, Any]:
    """The trace of ``record_id`` merged from as many answers as it takes.

    ``depth`` None means every ancestor.  The result has the node's fields:
    ``bundles`` (each record once, nearest first), ``edges``, ``children``
    and ``frontier`` (parents named by an edge whose bundle is not here:
    beyond ``depth``, or not fetched because ``max_records`` was reached).
    ``truncated`` is true when ``max_records`` stopped the walk before
    ``depth``; ``children_next`` is present when more than ``max_children``
    children exist (pass it on to continue).
    """
    first = await fetch(record_id, _ask(depth), CHILDREN_PAGE, None)
    merged = _Merged(record_id)
    merged.add(first)
    truncated = False
    pending: deque[str] = deque(_str_list(first.get("frontier")))
    asked = {record_id}  # each id once, whatever a node answers
    while pending:
        ancestor = pending.popleft()
        level = merged.levels.get(ancestor)
        if ancestor in merged.bundles or ancestor in asked or level is None:
            continue
        if depth is not None and level > depth:
            continue  # beyond what was asked: it stays in the frontier
        if len(merged.bundles) >= max_records:
            truncated = True
            break
        asked.add(ancestor)
        more = await fetch(ancestor, _ask(None if depth is None else depth - level), 1, None)
        merged.add(more)
        pending.extend(_str_list(more.get("frontier")))
    children = _str_list(first.get("children"))
    cursor = first.get("children_next")
    while isinstance(cursor, str) and len(children) < max_children:
        page = await fetch(record_id, 0, CHILDREN_PAGE, cursor)
        fresh = _str_list(page.get("children"))
        children.extend(fresh)
        nxt = page.get("children_next")
        # A cursor only moves forward (ids sort as their hex does).
        cursor = nxt if isinstance(nxt, str) and fresh and nxt > cursor else None
    doc = merged.document(depth)
    doc["children"] = children[:max_children]
    if len(children) > max_children:
        doc["children_next"] = children[max_children - 1]
    elif isinstance(cursor, str):
        doc["children_next"] = cursor
    if truncated:
        doc["truncated"] = True
    return doc


class _Merged:
    """Bundles and edges of several answers, each record once; a record's
    level is its distance from the root along the edges seen so far."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.bundles: dict[str, Any] = {}
        self.edges: dict[tuple[str, str], None] = {}
        self.levels: dict[str, int] = {root: 0}
        self.breakers: dict[str, Any] = {}  # by the record in review

    def add(self, doc: Mapping[str, Any]) -> None:
        bundles = doc.get("bundles")
        for bundle in bundles if isinstance(bundles, list) else []:
            rid = bundle.get("record_id") if isinstance(bundle, dict) else None
            if isinstance(rid, str) and rid not in self.bundles:
                self.bundles[rid] = bundle
        edges = doc.get("edges")
        for edge in edges if isinstance(edges, list) else []:
            if not (isinstance(edge, list) and len(edge) == 2
                    and all(isinstance(e, str) for e in edge)):
                continue
            self._link(*edge)
            self.edges[(edge[0], edge[1])] = None
        trips = doc.get("breakers")
        for trip in trips if isinstance(trips, list) else []:
            rid = trip.get("record") if isinstance(trip, dict) else None
            if not isinstance(rid, str) or rid in self.breakers:
                continue
            self.breakers[rid] = trip
            # The alerts the trip names are walked like the record's parents.
            for alert in _trip_alerts(trip):
                self._link(rid, alert)

    def _link(self, child: str, parent: str) -> None:
        if child in self.levels:
            level = self.levels[child] + 1
            if level < self.levels.get(parent, level + 1):
                self.levels[parent] = level

    def document(self, depth: int | None) -> dict[str, Any]:
        """The merged answer; with ``depth``, without what lies beyond it."""
        def within(rid: str) -> bool:
            return depth is None or self.levels.get(rid, depth + 1) <= depth

        bundles = {rid: b for rid, b in self.bundles.items() if within(rid)}
        edges = [[c, p] for c, p in self.edges if c in bundles]
        trips = [t for rid, t in self.breakers.items() if rid in bundles]
        frontier = {p: None for p in [p for _, p in edges]
                    + [a for t in trips for a in _trip_alerts(t)] if p not in bundles}
        doc: dict[str, Any] = {"record": self.root, "bundles": list(bundles.values()),
                               "edges": edges, "children": [], "frontier": list(frontier)}
        if trips:
            doc["breakers"] = trips
        return doc


def _trip_alerts(trip: Mapping[str, Any]) -> list[str]:
    """The alert ids a trip's entry names (nothing verified: the auditor does)."""
    entry = trip.get("entry")
    try:
        return [r.hex() for r in decode_breaker_entry(from_b64(entry)).records] \
            if isinstance(entry, str) else []
    except (BreakerEntryError, BadEncoding):
        return []


def _ask(depth: int | None) -> int | None:
    return depth if depth is not None and depth <= REQUEST_DEPTH else None


def _str_list(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
