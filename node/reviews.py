"""The review queue (``GET /v1/reviews``, PROTOCOL §6, §10.10) and its
metrics: records held for approvals or open for review, and those decided.

Everything here is read from committed state: the open entries the
verdicts keep (``ChainStore.verdicts.held``), the ``f`` index of
transitions, and the children index (alerts and decisions name the record
as a parent).  A page is bounded: at most ``LIMIT_MAX`` records, and for
each at most ``CHILDREN_SCAN`` children read.
"""

from __future__ import annotations

from typing import Any

from ledger.chain import ChainStore
from ledger.encoding import to_hex
from ledger.errors import BadRequest, NotFound
from ledger.held import Held
from ledger.records import Record, decode_committed_envelope
from ledger.risk import ALERT, DECISION
from ledger.verdict_store import verdict_doc

from .metrics import Metrics
from ledger.breaker_entries import is_breaker_entry
from ledger.verdicts import decode_transition

STATES = ("open", "decided")
LIMIT_DEFAULT = 50
LIMIT_MAX = 200
CHILDREN_SCAN = 256
APPROVAL_KIND = "approval"


def parse_after(state: str, after: str | None) -> int | bytes | None:
    """The cursor of ``state``: a leaf index (open) or a record id (decided)."""
    if after is None:
        return None
    if state == "open":
        if not after.isdigit() or len(after) > 20:
            raise BadRequest("after: the 'next' of an open page (a leaf index)")
        return int(after)
    try:
        raw = bytes.fromhex(after)
    except ValueError:
        raw = b""
    if len(raw) != 32 or after != after.lower():
        raise BadRequest("after: the 'next' of a decided page (a record id, lowercase hex)")
    return raw


def review_page(chain: ChainStore, state: str, limit: int,
                after: int | bytes | None) -> dict[str, Any]:
    tip = chain.tip()
    now = tip.time if tip is not None else 0
    items: list[dict[str, Any]] = []
    nxt: str | None = None
    if state == "open":
        start = after if isinstance(after, int) else -1
        entries = sorted((h for h in chain.verdicts.held.values() if h.leaf_index > start),
                         key=lambda h: h.leaf_index)
        for entry in entries[:limit]:
            items.append(_item(chain, entry.record, entry, now))
        if len(entries) > limit:
            nxt = str(entries[limit - 1].leaf_index)
    else:
        ids = chain.decided(limit + 1, after if isinstance(after, bytes) else None)
        for record_id in ids[:limit]:
            items.append(_item(chain, record_id, None, now))
        if len(ids) > limit:
            nxt = to_hex(ids[limit - 1])
    return {"state": state, "height": chain.height, "time": now,
            "open": len(chain.verdicts.held), "reviews": items, "next": nxt}


def review_one(chain: ChainStore, record_id: bytes) -> dict[str, Any]:
    """``?record=ID``: the page of that one committed record, whatever its
    status (404 ``not_found`` unless committed)."""
    if chain.record_location(record_id) is None:
        raise NotFound("no committed record with this id")
    tip = chain.tip()
    now = tip.time if tip is not None else 0
    held = chain.verdicts.held.get(record_id)
    return {"state": "open" if held is not None else "decided", "height": chain.height,
            "time": now, "open": len(chain.verdicts.held),
            "reviews": [_item(chain, record_id, held, now)], "next": None}


def _record(chain: ChainStore, record_id: bytes) -> tuple[Record, int] | None:
    location = chain.record_location(record_id)
    raw = chain.envelope(record_id)
    if location is None or raw is None:
        return None  # below a state-sync snapshot not back-filled yet
    return decode_committed_envelope(raw).record, location[0]


def _item(chain: ChainStore, record_id: bytes, held: Held | None, now: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"record": to_hex(record_id)}
    found = _record(chain, record_id)
    rv = chain.record_verdict(record_id)
    if found is None or rv is None:
        return doc
    record, height = found
    header = chain.header(height)
    since = header.time if header is not None else 0
    doc.update(height=height, kind=record.kind, submitter=to_hex(record.submitter),
               origin=dict(record.origin), since=since)
    amount = record.body.get("amount")
    if type(amount) is int:
        doc["amount"] = amount
    currency = record.body.get("currency")
    if type(currency) is str:
        doc["currency"] = currency
    doc["verdict"] = verdict_doc(rv, held)
    if rv.final_height:
        final = chain.header(rv.final_height)
        doc["decided_time"] = final.time if final is not None else 0
        doc["age_ms"] = max(0, doc["decided_time"] - since)
    else:
        doc["age_ms"] = max(0, now - since)
    alerts, decisions = [], []
    children = chain.children(record_id, limit=CHILDREN_SCAN + 1)
    for child_id in children[:CHILDREN_SCAN]:
        child = _record(chain, child_id)
        if child is None:
            continue
        rec, child_height = child
        if rec.kind == ALERT and rec.parents[0] == record_id:
            alerts.append({"record": to_hex(child_id), "height": child_height,
                           "monitor": to_hex(rec.submitter), "score": rec.body.get("score"),
                           "detector": rec.body.get("detector"),
                           "version": rec.body.get("version")})
        elif rec.kind in (DECISION, APPROVAL_KIND) and rec.parents[0] == record_id:
            cv = chain.record_verdict(child_id)
            decisions.append({
                "record": to_hex(child_id), "height": child_height, "kind": rec.kind,
                "decision": rec.body.get("decision", "approve") if rec.kind == DECISION
                else "approve",
                "reviewer": to_hex(rec.submitter), "note": rec.body.get("note", ""),
                "counted": cv is not None and cv.verdict.outcome.value == "allow",
                "reason": cv.verdict.reason if cv is not None else ""})
    decisions.sort(key=lambda d: (d["height"], d["record"]))
    alerts.sort(key=lambda a: (a["height"], a["record"]))
    doc["alerts"], doc["decisions"] = alerts, decisions
    if len(children) > CHILDREN_SCAN:
        doc["children_truncated"] = True
    return doc


class ReviewMetrics:
    """``ledger_review_queue_open`` (on scrape) and
    ``ledger_review_time_in_queue_seconds`` (each transition a block commits
    while the node runs: the block time of the transition's block minus
    that of the decided record's)."""

    def __init__(self, chain: ChainStore, metrics: Metrics) -> None:
        self.chain = chain
        self.metrics = metrics
        metrics.on_scrape(self._publish)

    def _publish(self) -> None:
        held = self.chain.verdicts.held.values()
        review = sum(1 for h in held if h.review)
        self.metrics.review_open.labels(status="review").set(review)
        self.metrics.review_open.labels(status="held").set(len(held) - review)

    def committed(self, height: int, time_ms: int) -> None:
        entries = self.chain.verdict_entries(height)
        header = self.chain.header(height)
        if not entries or header is None:
            return
        for raw in entries[header.tx_count:]:
            if is_breaker_entry(raw):  # a breaker's transition, not a held record's
                continue
            transition = decode_transition(raw)
            location = self.chain.record_location(transition.record)
            held_at = self.chain.header(location[0]) if location is not None else None
            if held_at is None:
                continue
            self.metrics.review_time_in_queue.labels(status=transition.status.value).observe(
                max(0, time_ms - held_at.time) / 1000)
