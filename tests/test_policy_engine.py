"""The CEL policy evaluator and its governance (PROTOCOL §10.2-10.4, issue 25)."""

from __future__ import annotations

from typing import Any

import pytest
from govhelpers import gov_genesis, gov_record
from helpers import make_keys
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import GovernanceError
from ledger.membership import Membership
from ledger.policy import (
    BadPolicy,
    Outcome,
    RecordInput,
    decode_policy,
    load_policy_engine,
    policy_from_json,
)
from ledger.policy.state import PolicyState
from ledger.records import Record
from ledger.records import make_record as _make_record

def make_record(chain: str, submitter: bytes, nonce: int, ts: int, kind: str,
                origin: dict[str, str], body: dict[str, Any]) -> Record:
    return _make_record(chain=chain, submitter=submitter, nonce=nonce, ts=ts, kind=kind,
                        origin=origin, body=body)


SUB = make_keys(1, 1_000_000)[0]
T0 = 1_700_000_000_000

POLICY: dict[str, Any] = {
    "name": "payments", "version": 1, "default": "review",
    "windows": {"acct_1m": {"by": "origin.account", "ms": 60_000, "kinds": ["payment"]}},
    "lookups": {"sanctioned_country": {"list": "sanctioned_countries", "key": ["origin.country"]},
                "known": {"list": "known_accounts", "key": ["origin.account"]},
                "corridor": {"list": "licensed_corridors",
                             "key": ["origin.account", "origin.country", "body.to_country"]}},
    "rules": [
        {"name": "sanctioned", "when": "listed.sanctioned_country",
         "then": {"outcome": "deny", "reason": "sanctioned_country"}},
        {"name": "corridor", "kinds": ["transfer"], "when": "!listed.corridor",
         "then": {"outcome": "deny", "reason": "unlicensed_corridor"}},
        {"name": "small", "kinds": ["payment"],
         "when": 'listed.known && record.body.currency == "EUR" && record.body.amount < 5000',
         "then": "allow"},
        {"name": "large", "kinds": ["payment"],
         "when": 'record.body.currency == "EUR" && record.body.amount > 1000000',
         "then": {"outcome": "approve", "approvals": 2, "role": "treasury"}},
        {"name": "fast", "kinds": ["payment"], "when": "velocity.acct_1m.count > 20",
         "then": "review"},
    ],
}


def rec(kind: str = "payment", nonce: int = 0, origin: dict[str, str] | None = None,
        body: dict[str, Any] | None = None) -> RecordInput:
    o = {"account": "acc-1", "country": "DE"} if origin is None else origin
    b = {"amount": 1000, "currency": "EUR"} if body is None else body
    return RecordInput(make_record("test", SUB.public_key, nonce, T0, kind, o, b),
                       frozenset({"submit"}))


def gov(kind: str, body: dict[str, Any], nonce: int = 0) -> RecordInput:
    r = make_record("test", SUB.public_key, nonce, T0, kind, {}, dict(body, expires_height=99))
    return RecordInput(r, frozenset())


def engine_with(policy: dict[str, Any] = POLICY, lists: dict[str, list[str]] | None = None
                ) -> Any:
    e = load_policy_engine()
    block = [gov("gov.policy.set", {"policy": policy_from_json(policy).policy_bytes})]
    for i, (name, entries) in enumerate(sorted((lists or {}).items())):
        block.append(gov("gov.list.add", {"list": name, "entries": sorted(entries)}, i + 1))
    e.commit_block(1, T0, block, ())
    return e


LISTS = {"sanctioned_countries": ["IR", "KP"], "known_accounts": ["acc-1", "acc-2"],
         "licensed_corridors": ["acc-1:DE:FR"]}


def test_no_policy_allows_everything() -> None:
    e = load_policy_engine()
    assert e.version == 0
    assert e.evaluate_one(1, T0, rec()).outcome is Outcome.ALLOW


def test_the_five_examples() -> None:
    e = engine_with(lists=LISTS)
    assert e.version == 1
    small = e.evaluate_one(2, T0, rec())
    assert (small.outcome, small.rule, small.policy_version) == (Outcome.ALLOW, "small", 1)
    unknown = e.evaluate_one(2, T0, rec(origin={"account": "acc-9", "country": "DE"}))
    assert unknown.outcome is Outcome.REVIEW and unknown.rule == ""  # the default
    big = e.evaluate_one(2, T0, rec(body={"amount": 2_000_000, "currency": "EUR"}))
    assert (big.outcome, big.approvals, big.role) == (Outcome.APPROVE, 2, "treasury")
    sanctioned = e.evaluate_one(2, T0, rec(origin={"account": "acc-1", "country": "IR"}))
    assert (sanctioned.outcome, sanctioned.reason) == (Outcome.DENY, "sanctioned_country")
    ok = e.evaluate_one(2, T0, rec("transfer", body={"amount": 1, "to_country": "FR"}))
    no = e.evaluate_one(2, T0, rec("transfer", body={"amount": 1, "to_country": "US"}))
    assert ok.outcome is Outcome.REVIEW and (no.outcome, no.reason) == (
        Outcome.DENY, "unlicensed_corridor")
    block = [rec(nonce=i) for i in range(25)]
    verdicts = e.evaluate_block(2, T0 + 1000, block)
    assert [v.outcome for v in verdicts] == [Outcome.ALLOW] * 20 + [Outcome.REVIEW] * 5
    e.commit_block(2, T0 + 1000, block, verdicts)
    assert e.evaluate_one(3, T0 + 30_000, rec(nonce=99)).outcome is Outcome.REVIEW
    # The window forgets after 60 s of block time.
    assert e.evaluate_one(3, T0 + 61_000, rec(nonce=99)).outcome is Outcome.ALLOW


def test_missing_field_and_errors_deny() -> None:
    e = engine_with(lists=LISTS)
    v = e.evaluate_one(2, T0, rec(body={"currency": "EUR"}))
    assert (v.outcome, v.reason, v.rule) == (Outcome.DENY, "missing_field", "small")
    v = e.evaluate_one(2, T0, rec(body={"amount": "ten", "currency": "EUR"}))
    assert (v.outcome, v.reason) == (Outcome.DENY, "policy_error")
    assert e.errors >= 2
    # Governance records are never held by the policy.
    assert e.evaluate_one(2, T0, gov("gov.list.add", {"list": "x", "entries": ["a"]})).outcome \
        is Outcome.ALLOW


@pytest.mark.parametrize("when, words", [
    ("record.body.amount < 1.5", "floats"),
    ("record.body.amount < 1e3", "floats"),
    ('timestamp("2020-01-01T00:00:00Z") < timestamp("2021-01-01T00:00:00Z")', "timestamp"),
    ("now() > 0", "now"),
    ('record.kind.matches("a")', "matches"),
    ("record.body.amount <", "column 21"),
    ("nope > 1", "undeclared"),
    ("record.parents.all(p, record.parents.exists(q, q == p))", "nested"),
    ("velocity.other.count > 1", "not a window"),
    ("1 + 1", "boolean"),
])
def test_bad_rules_are_refused_with_a_position(when: str, words: str) -> None:
    doc = dict(POLICY, rules=[{"name": "r", "when": when, "then": "allow"}])
    with pytest.raises(BadPolicy, match=words) as info:
        policy_from_json(doc)
    assert info.value.code == "bad_policy"


def test_policy_bytes_round_trip_and_hash() -> None:
    p = policy_from_json(POLICY)
    assert p.policy_bytes.startswith(b"auditledger/policy/v1\n")
    q = decode_policy(p.policy_bytes)
    assert q.hash == p.hash and q.rules == p.rules
    with pytest.raises(BadPolicy):
        decode_policy(p.policy_bytes + b"\x00")


def test_governance_kinds_under_membership() -> None:
    genesis, _, members, _ = gov_genesis()
    m = Membership.from_genesis(genesis)
    p1 = policy_from_json(POLICY).policy_bytes
    env = gov_record(genesis.chain, members[:2], 1, "gov.policy.set", {"policy": p1})
    change = m.check_governance(env, 1)
    m = m.apply(1, [env])
    assert m.at(2).policy_version == 1 and m.at(1).policy_version == 0
    assert ("policy",) in m.at(2).made_by
    # The same version again is refused; a policy that does not compile too.
    again = gov_record(genesis.chain, members[:2], 2, "gov.policy.set", {"policy": p1})
    with pytest.raises(GovernanceError, match="not above"):
        m.check_governance(again, 2)
    bad = p1.replace(b"listed.sanctioned_country", b"listed.sanctioned_countr!")
    with pytest.raises(GovernanceError):
        m.check_governance(gov_record(genesis.chain, members[:2], 3, "gov.policy.set",
                                      {"policy": bad}), 2)
    adds = [gov_record(genesis.chain, members[:2], 4 + i, "gov.list.add",
                       {"list": "known_accounts", "entries": e})
            for i, e in enumerate([["a", "b"], ["c"]])]
    m = m.apply(2, adds)  # disjoint entries of one list in one block: no conflict
    clash = gov_record(genesis.chain, members[:2], 9, "gov.list.remove",
                       {"list": "known_accounts", "entries": ["c"]})
    with pytest.raises(GovernanceError, match="conflict|changes the same"):
        m.check_governance(clash, 2)
    unsorted = gov_record(genesis.chain, members[:2], 10, "gov.list.add",
                          {"list": "known_accounts", "entries": ["b", "a"]})
    with pytest.raises(GovernanceError, match="entries"):
        m.check_governance(unsorted, 3)
    assert change.effective == 2


def test_risk_tiers_from_monitors_only() -> None:
    doc = dict(POLICY, rules=[{"name": "risky", "when": "risk.tier >= 3", "then": "review"}],
               default="allow")
    e = engine_with(doc)
    tier = make_record("test", SUB.public_key, 5, T0, "risk.tier", {"account": "acc-1"},
                       {"tier": "high", "detector": "d", "version": "1"})
    e.commit_block(2, T0, [RecordInput(tier, frozenset({"submit"}))], ())
    assert e.evaluate_one(3, T0, rec()).outcome is Outcome.ALLOW
    e.commit_block(3, T0, [RecordInput(tier, frozenset({"submit", "monitor"}))], ())
    assert e.evaluate_one(4, T0, rec()).outcome is Outcome.REVIEW


_amounts = st.integers(min_value=0, max_value=3_000_000)
_accounts = st.sampled_from(["acc-1", "acc-2", "acc-3"])
_countries = st.sampled_from(["DE", "IR", "FR"])
_record = st.tuples(st.sampled_from(["payment", "transfer", "refund"]), _accounts, _countries,
                    _amounts, st.booleans())


def _input(i: int, spec: tuple[str, str, str, int, bool]) -> RecordInput:
    kind, account, country, amount, has_amount = spec
    body: dict[str, Any] = {"currency": "EUR", "to_country": "FR"}
    if has_amount:
        body["amount"] = amount
    return rec(kind, i, {"account": account, "country": country}, body)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_record, max_size=12), min_size=1, max_size=6),
       st.lists(st.integers(0, 40_000), min_size=6, max_size=6))
def test_same_verdicts_after_reload_and_replay(blocks: list[list[Any]], gaps: list[int]) -> None:
    """Verdicts and state are a function of the committed blocks: a node that
    persisted its state and reloaded it, and one that replayed every block,
    agree with the one that ran throughout (and the memo changes nothing)."""
    first = engine_with(lists=LISTS)
    history = [(1, T0, [gov("gov.policy.set",
                            {"policy": policy_from_json(POLICY).policy_bytes})]
                + [gov("gov.list.add", {"list": n, "entries": sorted(e)}, i + 1)
                   for i, (n, e) in enumerate(sorted(LISTS.items()))])]
    t, n = T0, 0
    for h, (specs, gap) in enumerate(zip(blocks, gaps), start=2):
        t += gap
        block = [_input(n + i, s) for i, s in enumerate(specs)]
        n += len(specs)
        verdicts = first.evaluate_block(h, t, block)
        reloaded = load_policy_engine(first.to_bytes())
        assert reloaded.evaluate_block(h, t, block) == verdicts
        fresh = load_policy_engine()
        fresh.commit_block(1, T0, history[0][2], ())
        for hh, tt, bb in history[1:]:
            fresh.commit_block(hh, tt, bb, ())
        fresh._compiled.memo.clear()  # type: ignore[union-attr]
        assert fresh.evaluate_block(h, t, block) == verdicts
        assert fresh.to_bytes() == first.to_bytes()
        first.commit_block(h, t, block, verdicts)
        history.append((h, t, block))
    assert load_policy_engine(first.to_bytes()).to_bytes() == first.to_bytes()
    assert isinstance(load_policy_engine(first.to_bytes()).state, PolicyState)
