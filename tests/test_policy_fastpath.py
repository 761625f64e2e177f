"""The evaluator's fast pass against its reference path (ledger/policy/fastpath.py).

Random policies drawn from rules that read every kind of input (literal
comparisons with few and many literals, record fields of every type,
windows with and without kinds, lookups of one and several fields, the
risk tier, the block, the submitter), random blocks with gaps that expire
window entries and governance and risk-tier records that change lists and
tiers on the way: the fast pass with its memo decides what the reference
path decides with no memo at all, and the state bytes agree after every
block (whether or not the window keys came from the evaluation).
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import make_keys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.policy import BlockInputs, RecordInput, policy_from_json
from ledger.policy.evaluator import CelPolicyEngine, load_policy_engine
from ledger.policy.state import PolicyState
from ledger.records import make_record

T0 = 1_700_000_000_000
SUBS = [k.public_key for k in make_keys(3, 4_200_000)]
ROLES = [frozenset({"submit"}), frozenset({"submit", "treasury"}),
         frozenset({"submit", "monitor"})]

RULES = [
    "listed.known",
    "!listed.corridor",
    "listed.sanctioned_country && record.body.amount > 100",
    "record.body.amount < 5000",
    "record.body.amount > 1000000 && record.body.currency == 'EUR'",
    "record.body.amount == 1 || record.body.amount == 2 || record.body.amount > 7"
    " || record.body.amount <= 0 || record.body.amount == 100 || record.body.amount < 50",
    "record.body.amount + 1 > 10",
    "velocity.acct.count > 2",
    "velocity.acct.sum > 100000",
    "velocity.big.count >= 1 && velocity.big.sum < 50",
    "velocity.by_amount.count > 1",
    "velocity.sub.count > 3",
    "velocity.by_kind.sum > 10 || velocity.by_kind.count == 2",
    "risk.tier >= 2",
    "risk.tier == 1",
    "record.origin.country == 'IR'",
    "record.kind == 'payment'",
    "size(record.parents) == 0",
    "block.height > 5",
    "block.time_ms % 2 == 0",
    "'treasury' in submitter.roles",
    "record.body.flag == true",
    "record.body.flag == 1",
    "has(record.body.note)",
    "record.body.nested.x == 1",
    "record.nonce < 10",
    "record.ts > 0",
    "submitter.key.startsWith('a')",
]
WHOLE_MAP_RULES = ["size(velocity) > 1", "size(listed) > 2 && velocity.acct.sum > 10"]

_then = st.sampled_from(["allow", "review", {"outcome": "deny", "reason": "no"},
                         {"outcome": "approve", "approvals": 2, "role": "treasury"}])
_kinds = st.one_of(st.none(), st.just(["payment"]), st.just(["refund", "transfer"]),
                   st.just(["payout"]), st.just(["risk.tier"]))


@st.composite
def policies(draw: Any) -> dict[str, Any]:
    pool = RULES + WHOLE_MAP_RULES if draw(st.booleans()) else RULES
    whens = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=10, unique=True))
    rules = []
    for i, when in enumerate(whens):
        rule: dict[str, Any] = {"name": f"r{i}", "when": when, "then": draw(_then)}
        kinds = draw(_kinds)
        if kinds is not None:
            rule["kinds"] = kinds
        rules.append(rule)
    return {
        "name": "diff", "version": 1, "default": draw(st.sampled_from(["allow", "review"])),
        "windows": {"acct": {"by": "origin.account", "ms": 1_000, "kinds": ["payment"]},
                    "big": {"by": "origin.account", "ms": 5_000},
                    "by_amount": {"by": "body.amount", "ms": 3_000},
                    "sub": {"by": "submitter", "ms": 2_000},
                    "by_kind": {"by": "kind", "ms": 1_000, "kinds": ["payout", "refund"]}},
        "lookups": {"known": {"list": "known", "key": ["origin.account"]},
                    "sanctioned_country": {"list": "countries", "key": ["origin.country"]},
                    "corridor": {"list": "corridors",
                                 "key": ["origin.account", "origin.country", "body.to"]}},
        "rules": rules,
    }


_amount = st.one_of(st.sampled_from([0, 1, 7, 100, 5000, 2**63 + 5, True, "10", None]),
                    st.integers(-3, 12), st.integers(0, 3_000_000))
_body_extra = st.fixed_dictionaries({}, optional={
    "currency": st.sampled_from(["EUR", "USD"]), "flag": st.sampled_from([True, False, 1, 0]),
    "note": st.just("n"), "nested": st.sampled_from([{"x": 1}, {"x": True}, {"y": 1}, 3]),
    "to": st.sampled_from(["FR", "US", 7])})
_record = st.tuples(
    st.sampled_from(["payment", "transfer", "refund", "risk.tier", "gov.list.add", "payout",
                     "settlement", "gov.member.note"]),
    st.sampled_from(["acc-1", "acc-2", "acc-3", ""]), st.sampled_from(["DE", "IR", "FR", ""]),
    _amount, _body_extra, st.integers(0, 2), st.booleans(), st.sampled_from(["high", "low"]))


def _input(n: int, spec: tuple[Any, ...]) -> RecordInput:
    kind, account, country, amount, extra, sub, parent, tier = spec
    origin = {k: v for k, v in (("account", account), ("country", country)) if v}
    body: dict[str, Any] = dict(extra)
    if amount is not None:
        body["amount"] = amount
    if kind == "risk.tier":
        body = {"tier": tier, "detector": "d", "version": "1"}
    elif kind == "gov.list.add":
        origin = {}
        body = {"list": "known", "entries": [account or "acc-9"], "expires_height": 99}
    record = make_record(chain="diff", submitter=SUBS[sub], nonce=n, ts=n % 3, kind=kind,
                         origin=origin, body=body, parents=[bytes(32)] if parent else [])
    return RecordInput(record, ROLES[sub])


def _engines(doc: dict[str, Any]) -> list[CelPolicyEngine]:
    gov = [RecordInput(make_record(chain="diff", submitter=SUBS[0], nonce=10**6 + i, ts=0, kind=k,
                                   body=dict(b, expires_height=99)), frozenset())
           for i, (k, b) in enumerate([
               ("gov.policy.set", {"policy": policy_from_json(doc).policy_bytes}),
               ("gov.list.add", {"list": "known", "entries": ["acc-1", "acc-2"]}),
               ("gov.list.add", {"list": "countries", "entries": ["IR"]}),
               ("gov.list.add", {"list": "corridors", "entries": ["acc-1:DE:FR"]})])]
    engines = [CelPolicyEngine(fast=True), CelPolicyEngine(fast=False),
               CelPolicyEngine(fast=True)]
    for e in engines:
        e.commit_block(1, T0, gov, ())
    reference = engines[1]._compiled
    assert reference is not None
    reference.memo_size = 0  # every record to CEL
    return engines


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), st.lists(st.tuples(st.lists(_record, max_size=12),
                                      st.sampled_from([0, 1, 500, 1_000, 2_000, 3_000, 5_000])),
                            min_size=1, max_size=8))
def test_fast_pass_decides_what_the_reference_decides(
        doc: dict[str, Any], blocks: list[tuple[list[Any], int]]) -> None:
    fast, reference, fast_no_keys = _engines(doc)
    compiled = fast._compiled
    assert compiled is not None
    assert (compiled.fast is None) == any(r["when"] in WHOLE_MAP_RULES for r in doc["rules"])
    t, n = T0, 0
    for h, (specs, gap) in enumerate(blocks, start=2):
        t += gap
        block = [_input(n + i, s) for i, s in enumerate(specs)]
        n += len(specs)
        # As a node hands them over: two lists, no object per record.
        as_node = BlockInputs([r.record for r in block], [r.submitter_roles for r in block])
        verdicts = fast.evaluate_block(h, t, as_node)
        assert verdicts == reference.evaluate_block(h, t, block)
        assert fast_no_keys.evaluate_block(h, t, block) == verdicts
        # A node restarted from the saved state judges the block the same way.
        restarted = load_policy_engine(fast.to_bytes())
        assert restarted.evaluate_block(h, t, block) == verdicts
        fast.commit_block(h, t, as_node, verdicts)
        reference.commit_block(h, t, block, verdicts)
        # Equal records, other objects: the window keys are computed at commit.
        fast_no_keys.commit_block(h, t, [RecordInput(r.record, r.submitter_roles)
                                         for r in block], verdicts)
        restarted.commit_block(h, t, block, verdicts)
        assert fast.to_bytes() == reference.to_bytes() == fast_no_keys.to_bytes() \
            == restarted.to_bytes()
        for engine in (fast, reference, fast_no_keys, restarted):
            _check_windows(engine.state)


def test_block_inputs_read_as_the_record_inputs_they_stand_for() -> None:
    block = [_input(n, ("payment", "acc-1", "DE", n, {}, n % 3, False, "high"))
             for n in range(4)]
    inputs = BlockInputs([r.record for r in block], [r.submitter_roles for r in block])
    assert len(inputs) == 4 and list(inputs) == block and inputs[2] == block[2]
    assert list(inputs[1:3]) == block[1:3] and inputs[-1] == block[-1]
    with pytest.raises(ValueError):
        BlockInputs([block[0].record], [])


def _check_windows(state: PolicyState) -> None:
    """What the fast pass reads besides the entries agrees with them: each
    key's count and sum, each window's total and entry count, the groups
    in time order."""
    for wset in state.windows.values():
        counts: dict[str, int] = {}
        sums: dict[str, int] = {}
        times = [t for t, _, _ in wset.order]
        assert times == sorted(set(times))
        for _, keys, amounts in wset.order:
            assert len(keys) == len(amounts) > 0
            for key, a in zip(keys, amounts):
                counts[key] = counts.get(key, 0) + 1
                sums[key] = sums.get(key, 0) + a
        assert wset.keys == {k: [counts[k], sums[k]] for k in counts}
        assert wset.total == sum(sums.values())
        assert wset.entries == sum(counts.values())


def test_a_sum_beyond_int64_fails_every_rule_memo_or_not() -> None:
    """CEL refuses an input holding an int beyond int64, so a window sum
    that large fails every rule, also one reading only the count: the memo
    must not answer what an earlier record with the same count got."""
    doc = {"name": "big", "version": 1, "default": "allow",
           "windows": {"acct": {"by": "origin.account", "ms": 60_000}},
           "rules": [{"name": "fast", "when": "velocity.acct.count > 5", "then": "review"}]}
    for engine in _engines(doc):
        spec = ("payment", "acc-1", "DE", 5, {}, 0, False, "high")
        block = [_input(0, spec), _input(1, spec[:3] + (2**63 + 5,) + spec[4:])]
        first, second = engine.evaluate_block(2, T0, block)
        assert first.outcome == "allow" and first.rule == ""
        assert second.outcome == "deny" and second.reason == "policy_error"
