"""Review decisions (PROTOCOL §10.10): approve, reject and escalate of
records held for approvals or open for review, judged block by block; the
four-eyes param; the record rules of ``risk.decision``; restart and replay."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import as_genesis, block_time, certify, genesis_doc, make_envelope, make_keys
from policy_fakes import LimitPolicy

from ledger.blocks import Header
from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.encoding import canonical
from ledger.errors import BadRiskRecord, ForbiddenRole
from ledger.genesis import Genesis
from ledger.membership import check_record_in
from ledger.policy_replay import PolicyReplay
from ledger.records import Envelope, decode_committed_envelope
from ledger.reviews import (
    REASON_NOT_APPROVER,
    REASON_NOT_HELD,
    REASON_REPEAT,
    REASON_SELF,
    RULE_REVIEW,
)
from ledger.storage import MemoryStore
from ledger.verdicts import Status, VerdictError, decode_transition

PAYER, REVIEWER_A, REVIEWER_B, REVIEWER_C, PLAIN = range(5)


class Keys:
    def __init__(self) -> None:
        self.validators = make_keys(4)
        self.subs = make_keys(5, 2_000_000)


def _genesis(keys: Keys, params: dict[str, Any] | None = None) -> Genesis:
    doc = genesis_doc(keys.validators, keys.subs, "test", params=params)
    roles = {PAYER: ["submit", "review"], REVIEWER_A: ["submit", "review", "treasury"],
             REVIEWER_B: ["submit", "review"], REVIEWER_C: ["submit", "review"],
             PLAIN: ["submit"]}
    for i, sub in enumerate(doc["submitters"]):
        sub["roles"] = roles[i]
    return as_genesis(doc)


@pytest.fixture
def keys() -> Keys:
    return Keys()


def _chain(keys: Keys, params: dict[str, Any] | None = None,
           store: MemoryStore | None = None) -> ChainStore:
    chain = ChainStore(store if store is not None else MemoryStore(), _genesis(keys, params))
    chain.set_policy_engine(LimitPolicy())
    return chain


def _commit(chain: ChainStore, keys: Keys, envelopes: list[Envelope],
            time: int | None = None) -> Header:
    height = chain.height + 1
    header = chain.next_header(envelopes, block_time(height) if time is None else time,
                               (height - 1) % 4)
    chain.commit_block(header, envelopes, certify(header, keys.validators, chain.genesis))
    return header


def _flagged(key: SigningKey, nonce: int, amount: int = 5) -> Envelope:
    """LimitPolicy sends kind ``flagged`` to review."""
    return make_envelope(key, "test", nonce, kind="flagged",
                         body={"amount": amount, "currency": "EUR"})


def _big(key: SigningKey, nonce: int) -> Envelope:
    """Held for 2 treasury approvals by LimitPolicy."""
    return make_envelope(key, "test", nonce, body={"amount": 50_000, "currency": "EUR"})


def _decide(key: SigningKey, nonce: int, target: bytes, decision: str,
            rests_on: tuple[bytes, ...] = ()) -> Envelope:
    return make_envelope(key, "test", nonce, parents=[target, *rests_on], kind="risk.decision",
                         body={"decision": decision, "note": f"{decision} by test"})


def _reason(chain: ChainStore, env: Envelope) -> str:
    rv = chain.record_verdict(env.id)
    assert rv is not None and rv.verdict.rule == RULE_REVIEW
    return rv.verdict.reason


def test_a_record_in_review_is_open_until_a_reviewer_approves_it(keys: Keys) -> None:
    chain = _chain(keys)
    rec = _flagged(keys.subs[PAYER], 1)
    first = _commit(chain, keys, [rec])
    entry = chain.verdicts.held[rec.id]
    assert entry.review and entry.needed == 1 and entry.deadline == 0
    assert entry.since == first.time
    assert chain.record_verdict(rec.id).status == Status.REVIEW  # type: ignore[union-attr]
    # An approval record does not decide a review; the submitter cannot review itself.
    approval = make_envelope(keys.subs[REVIEWER_A], "test", 2, parents=[rec.id],
                             kind="approval", body={})
    own = _decide(keys.subs[PAYER], 3, rec.id, "approve")
    _commit(chain, keys, [approval, own], time=first.time + 10 * 86_400_000)  # no deadline
    assert chain.record_verdict(approval.id).verdict.reason == REASON_NOT_HELD  # type: ignore[union-attr]
    assert _reason(chain, own) == REASON_SELF
    ok = _decide(keys.subs[REVIEWER_B], 4, rec.id, "approve")
    _commit(chain, keys, [ok], time=first.time + 10 * 86_400_000 + 1000)
    assert _reason(chain, ok) == ""
    rv = chain.record_verdict(rec.id)
    assert rv is not None and rv.status == Status.APPROVED and rv.final_height == 3
    assert rv.transition is not None and rv.transition.approvals == (ok.id,)
    assert rec.id not in chain.verdicts.held
    late = _decide(keys.subs[REVIEWER_C], 5, rec.id, "reject")
    _commit(chain, keys, [late])
    assert _reason(chain, late) == REASON_NOT_HELD


def test_reject_makes_the_record_rejected_and_names_the_decision(keys: Keys) -> None:
    chain = _chain(keys)
    big = _big(keys.subs[PAYER], 1)
    _commit(chain, keys, [big])
    approve = make_envelope(keys.subs[REVIEWER_A], "test", 2, parents=[big.id],
                            kind="approval", body={})
    reject = _decide(keys.subs[REVIEWER_B], 3, big.id, "reject")
    after = _decide(keys.subs[REVIEWER_C], 4, big.id, "approve")
    _commit(chain, keys, [approve, reject, after])
    assert _reason(chain, reject) == ""
    assert _reason(chain, after) == REASON_NOT_HELD  # rejected earlier in the block
    rv = chain.record_verdict(big.id)
    assert rv is not None and rv.status == Status.REJECTED and rv.final_height == 2
    assert rv.transition is not None and rv.transition.approvals == (reject.id,)
    assert not chain.verdicts.held


def test_a_reviewer_approves_a_held_record_only_with_its_role(keys: Keys) -> None:
    chain = _chain(keys)
    big = _big(keys.subs[PAYER], 1)
    _commit(chain, keys, [big])
    without = _decide(keys.subs[REVIEWER_B], 2, big.id, "approve")   # no treasury role
    treasurer = _decide(keys.subs[REVIEWER_A], 3, big.id, "approve")
    again = make_envelope(keys.subs[REVIEWER_A], "test", 4, parents=[big.id],
                          kind="approval", body={})
    _commit(chain, keys, [without, treasurer, again])
    assert _reason(chain, without) == REASON_NOT_APPROVER
    assert _reason(chain, treasurer) == ""
    assert chain.record_verdict(again.id).verdict.reason == "repeat_approval"  # type: ignore[union-attr]
    assert chain.record_verdict(big.id).status == Status.HELD  # type: ignore[union-attr]
    doc = chain.verdicts.held[big.id].to_json()
    assert doc["approvals_needed"] == 2 and len(doc["approved_by"]) == 1


def test_escalate_needs_one_more_approval_from_someone_else(keys: Keys) -> None:
    store = MemoryStore()
    chain = _chain(keys, store=store)
    rec = _flagged(keys.subs[PAYER], 1)
    _commit(chain, keys, [rec])
    esc = _decide(keys.subs[REVIEWER_A], 2, rec.id, "escalate")
    _commit(chain, keys, [esc])
    assert _reason(chain, esc) == ""
    entry = chain.verdicts.held[rec.id]
    assert entry.needed == 2 and entry.escalations == ((keys.subs[REVIEWER_A].public_key,
                                                         esc.id),)
    # A restart reads the escalation back.
    reopened = ChainStore(store, chain.genesis)
    reopened.set_policy_engine(LimitPolicy())
    assert reopened.verdicts.held == chain.verdicts.held
    mine = _decide(keys.subs[REVIEWER_A], 3, rec.id, "approve")   # the escalator
    one = _decide(keys.subs[REVIEWER_B], 4, rec.id, "approve")
    _commit(reopened, keys, [mine, one])
    assert _reason(reopened, mine) == REASON_REPEAT
    assert reopened.record_verdict(rec.id).status == Status.REVIEW  # type: ignore[union-attr]
    two = _decide(keys.subs[REVIEWER_C], 5, rec.id, "approve")
    _commit(reopened, keys, [two])
    rv = reopened.record_verdict(rec.id)
    assert rv is not None and rv.status == Status.APPROVED
    assert rv.transition is not None and rv.transition.approvals == (one.id, two.id)


def test_four_eyes_param_needs_two_distinct_reviewers_above_the_amount(keys: Keys) -> None:
    chain = _chain(keys, {"review_four_eyes_amount": 1000})
    small, large = _flagged(keys.subs[PAYER], 1, 999), _flagged(keys.subs[PAYER], 2, 1000)
    _commit(chain, keys, [small, large])
    assert chain.verdicts.held[small.id].needed == 1
    assert chain.verdicts.held[large.id].needed == 2
    first = _decide(keys.subs[REVIEWER_B], 3, large.id, "approve")
    same = _decide(keys.subs[REVIEWER_B], 4, large.id, "approve")
    _commit(chain, keys, [first, same])
    assert _reason(chain, same) == REASON_REPEAT
    assert chain.record_verdict(large.id).status == Status.REVIEW  # type: ignore[union-attr]
    second = _decide(keys.subs[REVIEWER_C], 5, large.id, "approve")
    _commit(chain, keys, [second])
    assert chain.record_verdict(large.id).status == Status.APPROVED  # type: ignore[union-attr]


def test_decision_record_rules(keys: Keys) -> None:
    chain = _chain(keys)
    state = chain.membership.at(1)
    target = b"\x07" * 32
    check_record_in(state, _decide(keys.subs[REVIEWER_B], 1, target, "reject"), 1,
                    signatures=False)
    with pytest.raises(ForbiddenRole):   # no review role
        check_record_in(state, _decide(keys.subs[PLAIN], 1, target, "reject"), 1,
                        signatures=False)
    bad_bodies: list[dict[str, Any]] = [{"decision": "maybe", "note": ""},
                                        {"decision": "approve"},
                                        {"decision": "approve", "note": "x" * 257},
                                        {"decision": "approve", "note": "", "extra": 1}]
    for body in bad_bodies:
        env = make_envelope(keys.subs[REVIEWER_B], "test", 2, parents=[target],
                            kind="risk.decision", body=body)
        with pytest.raises(BadRiskRecord):
            check_record_in(state, env, 1, signatures=False)
    orphan = make_envelope(keys.subs[REVIEWER_B], "test", 3, kind="risk.decision",
                           body={"decision": "reject", "note": ""})
    with pytest.raises(BadRiskRecord):
        check_record_in(state, orphan, 1, signatures=False)


def test_rejected_transition_bytes() -> None:
    doc = {"approvals": [b"\x01" * 32], "record": b"\x02" * 32, "status": "rejected"}
    assert decode_transition(canonical(doc)).status == Status.REJECTED
    with pytest.raises(VerdictError):
        decode_transition(canonical({**doc, "approvals": []}))
    with pytest.raises(VerdictError):
        decode_transition(canonical({**doc, "status": "escalated"}))


def test_replay_derives_every_decision(keys: Keys) -> None:
    chain = _chain(keys)
    rec, big = _flagged(keys.subs[PAYER], 1), _big(keys.subs[PAYER], 2)
    _commit(chain, keys, [rec, big])
    _commit(chain, keys, [_decide(keys.subs[REVIEWER_A], 3, rec.id, "escalate"),
                          _decide(keys.subs[REVIEWER_B], 4, big.id, "reject")])
    _commit(chain, keys, [_decide(keys.subs[REVIEWER_B], 5, rec.id, "approve"),
                          _decide(keys.subs[REVIEWER_C], 6, rec.id, "approve")])
    replay = PolicyReplay(chain.genesis, LimitPolicy())
    for h in range(1, chain.height + 1):
        header = chain.header(h)
        assert header is not None
        envs = [decode_committed_envelope(e) for e in chain.block_envelopes(h)]
        replay.block(header, envs, chain.verdict_entries(h))
    assert replay.state.held == chain.verdicts.held == {}
    assert chain.record_verdict(rec.id).status == Status.APPROVED  # type: ignore[union-attr]
    assert chain.record_verdict(big.id).status == Status.REJECTED  # type: ignore[union-attr]
