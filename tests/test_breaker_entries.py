"""Breaker transitions are committed and provable (PROTOCOL §10.5, §12.3, §6
"The trace answer"): the block whose alerts trip a breaker, or whose close
record closes it, commits the transition as a breaker entry after its
verdicts and transitions; a proposer that leaves it out is refused; the
trace of a record the breaker sent to review carries the trip's proof and
the tripping alerts' bundles, and the auditor verifies it offline, naming
the step of any tampering."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from helpers import block_time, certify
from test_breaker_verdicts import (
    MON_A,
    MON_B,
    PAYER,
    SHOP,
    VALIDATORS,
    _alert,
    _chain,
    _close,
    _commit,
    _env,
)

from client.audit.remote import TraceHop, _trips
from ledger.approvals import VerdictMismatch
from ledger.breaker_entries import (
    BreakerEntry,
    BreakerEntryError,
    decode_breaker_entry,
    is_breaker_entry,
)
from ledger.chain import ChainStore
from ledger.encoding import canonical, from_b64, to_b64
from ledger.errors import VerificationError
from ledger.records import Envelope
from ledger.verdicts import Status, Transition
from ledger.verify import VerifiedBundle, verify_bundle
from ledger.verify_breakers import AlertNotInTrace, check_breaker_proof
from node import trace

RID = bytes(range(32))


def _entries_after_verdicts(chain: ChainStore, height: int) -> list[BreakerEntry]:
    header = chain.header(height)
    entries = chain.verdict_entries(height)
    assert header is not None and entries is not None
    return [decode_breaker_entry(e) for e in entries[header.tx_count:] if is_breaker_entry(e)]


def test_breaker_entry_bytes_round_trip_and_refuse_anything_else() -> None:
    entry = BreakerEntry("account", "mule", "open", (RID, RID[::-1]))
    assert decode_breaker_entry(entry.to_bytes()) == entry
    assert is_breaker_entry(entry.to_bytes())
    # A held record's transition is not a breaker entry, nor the other way round.
    transition = Transition(RID, Status.REJECTED, (RID,))
    assert not is_breaker_entry(transition.to_bytes())
    good = {"records": [RID], "scope": "account", "to": "open", "value": "mule"}
    for bad in ({**good, "scope": "planet"}, {**good, "to": "half_open"}, {**good, "value": ""},
                {**good, "records": []}, {**good, "records": [RID[:31]]},
                {**good, "records": [RID] * 65}, {**good, "to": "closed", "records": [RID] * 2},
                {**good, "extra": 1}, {k: v for k, v in good.items() if k != "to"}):
        with pytest.raises(BreakerEntryError):
            decode_breaker_entry(canonical(bad))


def test_the_block_that_trips_or_closes_a_breaker_commits_the_transition() -> None:
    chain = _chain()
    flagged = _env(SHOP, account="mule")
    _commit(chain, [flagged])
    alerts = [_alert(MON_A, flagged), _alert(MON_B, flagged)]
    _commit(chain, alerts)
    # The trip of every scope of the flagged record (RULE: all five scopes).
    tripped = _entries_after_verdicts(chain, 2)
    assert {(e.scope, e.value) for e in tripped} >= {("account", "mule"),
                                                     ("submitter", SHOP.public_key.hex())}
    assert all(e.to == "open" and e.records == (alerts[0].id, alerts[1].id) for e in tripped)
    assert [e.to_bytes() for e in tripped] == \
        [t.entry().to_bytes() for t in chain.breakers.transitions]
    assert _entries_after_verdicts(chain, 1) == []
    close = _close("account", "mule")
    _commit(chain, [_env(PAYER, "transfer", account="mule"), close])
    assert _entries_after_verdicts(chain, 3) == [
        BreakerEntry("account", "mule", "closed", (close.id,))]
    # A close of a closed breaker changes nothing: no entry.
    _commit(chain, [_close("account", "mule")])
    assert _entries_after_verdicts(chain, 4) == []


def test_computing_a_candidate_block_leaves_the_breakers_as_they_were() -> None:
    chain = _chain()
    flagged = _env(SHOP, account="mule")
    _commit(chain, [flagged])
    _commit(chain, [_alert(MON_A, flagged)])
    before = chain.breakers.to_bytes()
    candidate = [_alert(MON_B, flagged)]
    header = chain.next_header(candidate, block_time(3), 2)
    assert chain.breakers.to_bytes() == before
    chain.commit_block(header, candidate, certify(header, VALIDATORS, chain.genesis))
    assert chain.breakers.is_open("account", "mule")


def test_a_block_that_leaves_out_the_trip_is_refused() -> None:
    honest, deviant = _chain(), _chain()
    flagged = _env(SHOP, account="mule")
    for chain in (honest, deviant):
        _commit(chain, [flagged])
    alerts = [_alert(MON_A, flagged), _alert(MON_B, flagged)]
    deviant.verdicts.lookup = lambda _: None  # a validator that cannot see the flagged record
    header = deviant.next_header(alerts, block_time(2), 1)
    with pytest.raises(VerdictMismatch):
        honest.check_block(header, alerts)


def test_a_trip_names_its_last_alerts_the_tripping_one_last() -> None:
    chain = _chain()
    flagged = _env(SHOP, account="mule")
    _commit(chain, [flagged])
    flood = [_alert(MON_A, flagged) for _ in range(70)]
    _commit(chain, flood)  # one monitor: m = 2 is not reached
    assert not chain.breakers.is_open("account", "mule")
    second = _alert(MON_B, flagged)
    _commit(chain, [second])
    (trip,) = [e for e in _entries_after_verdicts(chain, 3) if e.scope == "account"]
    assert len(trip.records) == 64 and trip.records[-1] == second.id
    assert trip.records[:-1] == tuple(a.id for a in flood[-63:])


# ---------------------------------------------------------------- the trace


def _case() -> tuple[ChainStore, Envelope, list[Envelope]]:
    chain = _chain()
    flagged = _env(SHOP, account="mule")
    _commit(chain, [flagged])
    _commit(chain, [_alert(MON_A, flagged)])
    last = _alert(MON_B, flagged)
    _commit(chain, [last])  # trips in block 3
    held = _env(PAYER, "transfer", account="mule")
    _commit(chain, [held, _env(PAYER, "transfer", account="fine")])
    return chain, held, [flagged, last]


def _trace(chain: ChainStore, record: bytes, depth: int = 64) -> dict[str, Any]:
    return asyncio.run(trace.build_trace(chain, trace.TraceQuery(record, depth=depth),
                                         trace.TraceLimits(max_nodes=1000)))


def _hops(doc: dict[str, Any], chain: ChainStore) -> dict[bytes, VerifiedBundle]:
    verified = [verify_bundle(b, chain.genesis) for b in doc["bundles"]]
    return {v.envelope.id: v for v in verified}


def test_the_trace_of_a_record_in_review_proves_the_trip_offline() -> None:
    chain, held, (flagged, last) = _case()
    doc = _trace(chain, held.id)
    (item,) = doc["breakers"]
    assert item["record"] == held.id.hex() and item["height"] == 3
    hops = _hops(doc, chain)
    # The alerts that tripped it and the record they flag are in the trace.
    trip_alerts = decode_breaker_entry(from_b64(item["entry"])).records
    assert set(trip_alerts) | {flagged.id} <= set(hops)
    assert set(a.hex() for a in trip_alerts) <= {p for _, p in doc["edges"]} | \
        {b["record_id"] for b in doc["bundles"]}
    trip = check_breaker_proof(item, hops, chain.genesis)
    assert (trip.entry.scope, trip.entry.value, trip.entry.to) == ("account", "mule", "open")
    assert trip.header.height == 3 and trip.entry.records[-1] == last.id
    # The auditor's pass over the answer (client.audit.remote).
    by_hex = {rid.hex(): TraceHop(rid.hex(), v, []) for rid, v in hops.items()}
    assert set(_trips(doc["breakers"], by_hex, chain.genesis, partial=False)) == {held.id.hex()}
    # A record allowed has no trip.
    assert "breakers" not in _trace(chain, flagged.id)


def _tampered(item: dict[str, Any], **change: Any) -> dict[str, Any]:
    out = copy.deepcopy(item)
    out.update(change)
    return out


def test_a_tampered_trip_fails_at_its_step() -> None:
    chain, held, (flagged, last) = _case()
    doc = _trace(chain, held.id)
    (item,) = doc["breakers"]
    hops = _hops(doc, chain)
    entry = decode_breaker_entry(from_b64(item["entry"]))

    def step(bad: dict[str, Any], where: dict[bytes, VerifiedBundle] = hops) -> str:
        with pytest.raises(VerificationError) as caught:
            check_breaker_proof(bad, where, chain.genesis)
        return caught.value.step

    other = BreakerEntry("account", "fine", "open", entry.records)
    closing = BreakerEntry("account", "mule", "closed", entry.records[-1:])
    assert step(_tampered(item, entry=to_b64(other.to_bytes()))) == "breaker"
    assert step(_tampered(item, entry=to_b64(closing.to_bytes()))) == "breaker"
    assert step(_tampered(item, record=flagged.id.hex())) == "breaker"  # not in review
    header4 = chain.header(4)
    assert header4 is not None
    assert step(_tampered(item, height=4)) == "breaker"  # not below the record's block
    assert step(_tampered(item, height=2)) == "breaker_alerts"  # the alert is in block 3
    assert step(_tampered(item, header=to_b64(header4.header_bytes))) == "breaker_header"
    cert = copy.deepcopy(item["certificate"])
    cert["signatures"] = cert["signatures"][:1]
    assert step(_tampered(item, certificate=cert)) == "breaker_certificate"
    assert step(_tampered(item, index=0)) == "breaker_inclusion"
    assert step(_tampered(item, index=item["index"], path=[])) == "breaker_inclusion"
    extra = BreakerEntry("account", "mule", "open", (flagged.id,) + entry.records)
    assert step(_tampered(item, entry=to_b64(extra.to_bytes()))) == "breaker_alerts"
    without = {k: v for k, v in hops.items() if k != entry.records[0]}
    with pytest.raises(AlertNotInTrace):
        check_breaker_proof(item, without, chain.genesis)
    assert step({**item, "extra": 1}) == "bundle"


def test_the_sdk_follows_a_cut_trace_through_the_trip_alerts() -> None:
    """A node's bounded answers (one bundle each) name the trip's alerts in
    ``frontier``; the SDK asks again from them (client/trace.py) and the
    merged trace holds the whole case, which verifies."""
    from client.trace import follow_trace

    chain, held, (flagged, last) = _case()

    async def fetch(rid: str, depth: int | None, limit: int, after: str | None) -> dict[str, Any]:
        query = trace.TraceQuery(bytes.fromhex(rid), 64 if depth is None else depth, limit,
                                 None if after is None else bytes.fromhex(after))
        return await trace.build_trace(chain, query, trace.TraceLimits(max_nodes=1))

    doc = asyncio.run(follow_trace(fetch, held.id.hex()))
    assert [t["record"] for t in doc["breakers"]] == [held.id.hex()]
    assert doc["frontier"] == [] and "truncated" not in doc
    hops = _hops(doc, chain)
    assert {held.id, last.id, flagged.id} <= set(hops)
    by_hex = {rid.hex(): TraceHop(rid.hex(), v, []) for rid, v in hops.items()}
    assert set(_trips(doc["breakers"], by_hex, chain.genesis, partial=False)) == {held.id.hex()}
    # With depth 0 the alerts lie beyond it: the trip is left unchecked, not invalid.
    shallow = asyncio.run(follow_trace(fetch, held.id.hex(), 0))
    assert [b["record_id"] for b in shallow["bundles"]] == [held.id.hex()]
    shallow_hops = {rid.hex(): TraceHop(rid.hex(), v, [])
                    for rid, v in _hops(shallow, chain).items()}
    assert _trips(shallow.get("breakers", []), shallow_hops, chain.genesis, partial=True) == {}
    with pytest.raises(AlertNotInTrace):
        _trips(shallow.get("breakers", []), shallow_hops, chain.genesis, partial=False)
