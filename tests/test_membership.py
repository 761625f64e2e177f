"""ledger/membership.py and ledger/governance.py: the membership in force at
each height, derived from genesis and committed governance records, and every
refusal rule of PROTOCOL §9.3 with its code."""

from __future__ import annotations

from typing import Any

import pytest
from govhelpers import EXTRA_SEED_BASE, gov_genesis, gov_record
from helpers import make_envelope, make_keys
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import (
    BadSignature,
    ConflictingProposal,
    DuplicateSignature,
    GenesisError,
    GovernanceError,
    KeyRotated,
    LedgerError,
    NotAMember,
    Paused,
    ProposalExpired,
    TooFewSignatures,
    TooFewValidators,
    UnknownSubmitter,
    UnreachableThreshold,
)
from ledger.encoding import canonical
from ledger.genesis import parse_genesis
from ledger.membership import Membership
from ledger.records import decode_envelope

GENESIS, VKEYS, MKEYS, SKEY = gov_genesis(4, 3)
CHAIN = GENESIS.chain
NEW = make_keys(8, EXTRA_SEED_BASE)


def body_of(kind: str, i: int = 0) -> dict[str, Any]:
    key = NEW[i].public_key
    return {
        "gov.validator.add": {"name": f"v{i}", "pubkey": key, "address": f"10.0.0.{i}:7700"},
        "gov.submitter.add": {"name": f"s{i}", "pubkey": key, "roles": ["submit"]},
        "gov.member.add": {"name": f"m{i}", "pubkey": key},
    }[kind]


def test_genesis_members_and_default_threshold() -> None:
    assert GENESIS.governance_threshold == 2 and len(GENESIS.members) == 3
    assert gov_genesis(4, 4)[0].governance_threshold == 3
    assert gov_genesis(4, 1)[0].governance_threshold == 1
    assert gov_genesis(4, 0)[0].governance_threshold == 0
    doc = dict(GENESIS.raw, governance_threshold=4)
    with pytest.raises(GenesisError, match="not in 1..3"):
        parse_genesis(doc)
    doc = dict(GENESIS.raw, members=[GENESIS.raw["members"][0]] * 2)
    with pytest.raises(GenesisError, match="duplicate"):
        parse_genesis(doc)


def test_validator_change_at_h_plus_2_others_at_h_plus_1() -> None:
    m = Membership.from_genesis(GENESIS)
    add_v = gov_record(CHAIN, MKEYS[:2], 1, "gov.validator.add", body_of("gov.validator.add"))
    add_s = gov_record(CHAIN, MKEYS[1:], 2, "gov.submitter.add", body_of("gov.submitter.add", 1))
    m = m.apply(5, [add_v, add_s])
    assert len(m.at(5).validators) == 4 and len(m.at(6).validators) == 4
    assert len(m.at(7).validators) == 5 and m.at(7).validators[4].index == 4
    assert NEW[1].public_key not in m.at(5).submitters
    assert NEW[1].public_key in m.at(6).submitters
    assert m.at(7).made_by[("validators",)] == add_v.id
    assert m.at(6).made_by[("submitter", NEW[1].public_key.hex())] == add_s.id
    assert m.at(4).validators_hash == GENESIS.validators_hash != m.at(7).validators_hash
    assert m.epochs() == [(1, GENESIS.validators_hash), (7, m.at(7).validators_hash)]
    # the epoch's genesis view certifies with the new set
    g7 = m.at(7).as_genesis(GENESIS)
    assert g7.n == 5 and g7.quorum == 4 and g7.validators_hash == m.at(7).validators_hash


def test_too_few_signatures() -> None:
    env = gov_record(CHAIN, MKEYS[:1], 1, "gov.member.add", body_of("gov.member.add"))
    with pytest.raises(TooFewSignatures) as err:
        Membership.from_genesis(GENESIS).apply(1, [env])
    assert err.value.code == "too_few_signatures"


def test_no_members_no_governance() -> None:
    genesis, _, _, _ = gov_genesis(4, 0)
    env = gov_record(CHAIN, MKEYS[:2], 1, "gov.member.add", body_of("gov.member.add"))
    with pytest.raises(NotAMember):
        Membership.from_genesis(genesis).apply(1, [env])


def test_duplicate_signature_is_refused_by_the_decoder() -> None:
    env = gov_record(CHAIN, MKEYS[:3], 1, "gov.member.add", body_of("gov.member.add"))
    value: dict[str, Any] = {"cosigs": [{"key": k, "sig": s} for k, s in env.signatures()[1:]],
                             "record": env.record.record_bytes, "sig": env.sig}
    twice = dict(value, cosigs=[value["cosigs"][0]] * 2)
    with pytest.raises(DuplicateSignature) as err:
        decode_envelope(cosigs=True, envelope_bytes=canonical(twice))
    assert err.value.code == "duplicate_signature"
    submitter_again = dict(value, cosigs=[{"key": env.record.submitter, "sig": env.sig}])
    with pytest.raises(DuplicateSignature):
        decode_envelope(cosigs=True, envelope_bytes=canonical(submitter_again))


def test_stranger_and_removed_member_are_not_members() -> None:
    stranger = gov_record(CHAIN, [MKEYS[0], NEW[5]], 1, "gov.member.add",
                          body_of("gov.member.add"))
    with pytest.raises(NotAMember) as err:
        Membership.from_genesis(GENESIS).apply(1, [stranger])
    assert err.value.code == "not_a_member"
    # four members, threshold 3; member 3 is removed, then signs
    genesis, _, mkeys, _ = gov_genesis(4, 4)
    remove = gov_record(CHAIN, mkeys[:3], 1, "gov.member.remove",
                        {"pubkey": mkeys[3].public_key})
    m = Membership.from_genesis(genesis).apply(1, [remove])
    late = gov_record(CHAIN, mkeys[1:], 2, "gov.scope.pause", {"scope": "kind", "value": "x"})
    m.check_governance(late, 1)  # still a member at height 1 (removal in force from 2)
    with pytest.raises(NotAMember):
        m.apply(2, [late])


def test_bad_cosignature() -> None:
    env = gov_record(CHAIN, MKEYS[:2], 1, "gov.member.add", body_of("gov.member.add"))
    other = gov_record(CHAIN, MKEYS[:2], 2, "gov.member.add", body_of("gov.member.add"))
    value = {"cosigs": [{"key": MKEYS[1].public_key, "sig": other.signatures()[1][1]}],
             "record": env.record.record_bytes, "sig": env.sig}
    forged = decode_envelope(cosigs=True, envelope_bytes=canonical(value))
    with pytest.raises(BadSignature):
        Membership.from_genesis(GENESIS).apply(1, [forged])


def test_expired_proposal() -> None:
    env = gov_record(CHAIN, MKEYS[:2], 1, "gov.member.add", body_of("gov.member.add"),
                     expires_height=10)
    Membership.from_genesis(GENESIS).apply(10, [env])
    with pytest.raises(ProposalExpired) as err:
        Membership.from_genesis(GENESIS).apply(11, [env])
    assert err.value.code == "proposal_expired"


def test_conflicting_proposals_first_in_log_order_wins() -> None:
    first = gov_record(CHAIN, MKEYS[:2], 1, "gov.validator.add", body_of("gov.validator.add", 0))
    second = gov_record(CHAIN, MKEYS[1:], 2, "gov.validator.add", body_of("gov.validator.add", 1))
    m = Membership.from_genesis(GENESIS)
    with pytest.raises(ConflictingProposal) as err:
        m.apply(3, [first, second])
    assert err.value.code == "conflicting_proposal"
    after = m.apply(3, [first])
    with pytest.raises(ConflictingProposal):
        after.apply(3, [second])
    # one block later it is a change at another height: valid
    assert len(after.apply(4, [second]).at(6).validators) == 6


def test_never_fewer_than_four_validators() -> None:
    env = gov_record(CHAIN, MKEYS[:2], 1, "gov.validator.remove", {"pubkey": VKEYS[0].public_key})
    with pytest.raises(TooFewValidators) as err:
        Membership.from_genesis(GENESIS).apply(1, [env])
    assert err.value.code == "too_few_validators"


def test_threshold_stays_reachable() -> None:
    m = Membership.from_genesis(GENESIS)
    too_high = gov_record(CHAIN, MKEYS[:2], 1, "gov.threshold.set", {"threshold": 4})
    zero = gov_record(CHAIN, MKEYS[:2], 2, "gov.threshold.set", {"threshold": 0})
    for env in (too_high, zero):
        with pytest.raises(UnreachableThreshold) as err:
            m.apply(1, [env])
        assert err.value.code == "unreachable_threshold"
    all_three = gov_record(CHAIN, MKEYS, 3, "gov.threshold.set", {"threshold": 3})
    m = m.apply(1, [all_three])
    remove = gov_record(CHAIN, MKEYS, 4, "gov.member.remove", {"pubkey": MKEYS[2].public_key})
    with pytest.raises(UnreachableThreshold):
        m.apply(2, [remove])


def test_rotated_key_old_records_valid_new_ones_refused() -> None:
    rotate = gov_record(CHAIN, MKEYS[:2], 1, "gov.submitter.rotate",
                        {"pubkey": SKEY.public_key, "new_pubkey": NEW[0].public_key})
    m = Membership.from_genesis(GENESIS).apply(3, [rotate])
    old = make_envelope(SKEY, CHAIN, 1)
    m.check_record(old, 3)  # committed before the rotation is in force
    with pytest.raises(KeyRotated) as err:
        m.check_record(old, 4)
    assert err.value.code == "key_rotated" and err.value.step == "submitter"
    m.check_record(make_envelope(NEW[0], CHAIN, 1), 4)
    assert m.at(4).submitters[NEW[0].public_key].name == "demo"
    with pytest.raises(UnknownSubmitter):
        m.check_record(make_envelope(NEW[0], CHAIN, 2), 3)


def test_pause_and_resume_scopes() -> None:
    m = Membership.from_genesis(GENESIS)
    pause = gov_record(CHAIN, MKEYS[:2], 1, "gov.scope.pause", {"scope": "account", "value": "a1"})
    m = m.apply(1, [pause])
    in_scope = make_envelope(SKEY, CHAIN, 5, origin={"system": "pos", "account": "a1"})
    elsewhere = make_envelope(SKEY, CHAIN, 6, origin={"system": "pos", "account": "a2"})
    m.check_record(in_scope, 1)
    with pytest.raises(Paused) as err:
        m.check_record(in_scope, 2)
    assert err.value.code == "paused"
    m.check_record(elsewhere, 2)
    resume = gov_record(CHAIN, MKEYS[1:], 2, "gov.scope.resume",
                        {"scope": "account", "value": "a1"})
    m = m.apply(2, [resume])
    m.check_record(in_scope, 3)
    again = gov_record(CHAIN, MKEYS[1:], 3, "gov.scope.resume",
                       {"scope": "account", "value": "a1"})
    with pytest.raises(GovernanceError, match="not paused"):
        m.apply(3, [again])


@pytest.mark.parametrize("kind,body", [
    ("gov.nothing", {}),
    ("gov.member.add", {"name": "x"}),
    ("gov.member.add", {"name": "x", "pubkey": b"short"}),
    ("gov.submitter.add", {"name": "x", "pubkey": b"\x01" * 32, "roles": ["z", "a"]}),
    ("gov.scope.pause", {"scope": "country", "value": "FR"}),
    ("gov.scope.pause", {"scope": "submitter", "value": "not hex"}),
    ("gov.params.set", {"params": {}}),
    ("gov.submitter.remove", {"pubkey": b"\x09" * 32}),
])
def test_malformed_or_senseless_actions(kind: str, body: dict[str, Any]) -> None:
    env = gov_record(CHAIN, MKEYS[:2], 1, kind, body)
    with pytest.raises(GovernanceError) as err:
        Membership.from_genesis(GENESIS).apply(1, [env])
    assert err.value.code == "bad_governance"


# --------------------------------------------------------------------------
# Properties over random governance histories
# --------------------------------------------------------------------------

KIND_CHOICES = ["gov.validator.add", "gov.validator.remove", "gov.validator.rotate",
                "gov.member.add", "gov.member.remove", "gov.threshold.set",
                "gov.submitter.add", "gov.submitter.rotate", "gov.scope.pause",
                "gov.scope.resume", "gov.params.set"]
ALL_VKEYS = [k.public_key for k in VKEYS] + [k.public_key for k in NEW]
ALL_MKEYS = [k.public_key for k in MKEYS] + [k.public_key for k in NEW]


def _random_body(kind: str, a: int, b: int) -> dict[str, Any]:
    key, other = ALL_VKEYS[a % len(ALL_VKEYS)], ALL_VKEYS[b % len(ALL_VKEYS)]
    if kind in ("gov.validator.add", "gov.submitter.add", "gov.member.add"):
        extra = {"gov.validator.add": {"address": ""}, "gov.member.add": {},
                 "gov.submitter.add": {"roles": ["submit"]}}[kind]
        return dict(extra, name=f"k{a}", pubkey=key)
    if kind.endswith(".rotate"):
        return {"pubkey": key, "new_pubkey": other}
    if kind == "gov.member.remove":
        return {"pubkey": ALL_MKEYS[a % len(ALL_MKEYS)]}
    if kind.endswith(".remove"):
        return {"pubkey": key}
    if kind == "gov.threshold.set":
        return {"threshold": a % 5}
    if kind == "gov.params.set":
        return {"params": {"max_block_records": a}}
    return {"scope": "kind", "value": f"k{a % 2}"}


history = st.lists(st.tuples(st.integers(1, 6), st.sampled_from(KIND_CHOICES),
                             st.integers(0, 11), st.integers(0, 11),
                             st.sets(st.integers(0, 2), min_size=2)), max_size=24)


def _membership_json(m: Membership, top: int) -> list[Any]:
    return [m.at(h).to_json() for h in range(0, top + 3)]


@settings(max_examples=100, deadline=None, derandomize=True)
@given(history)
def test_random_histories(steps: list[tuple[int, str, int, int, set[int]]]) -> None:
    steps = sorted(steps, key=lambda s: s[0])  # blocks in order; log order within
    m = Membership.from_genesis(GENESIS)
    committed: dict[int, list[Any]] = {}
    for nonce, (height, kind, a, b, signer_ids) in enumerate(steps):
        signers = [MKEYS[i] for i in sorted(signer_ids)]
        env = gov_record(CHAIN, signers, nonce, kind, _random_body(kind, a, b))
        try:
            m = m.apply(height, [env])  # a proposer includes what is valid, drops the rest
        except LedgerError:
            continue
        committed.setdefault(height, []).append(env)
    top = max(committed, default=0)
    for h in range(0, top + 3):  # invariants at every height
        state = m.at(h)
        assert len(state.validators) >= 4
        assert 1 <= state.threshold <= len(state.members)
        assert [v.index for v in state.validators] == list(range(len(state.validators)))
    # replaying the same blocks gives the same membership at every height
    replay = Membership.from_genesis(GENESIS)
    for height in sorted(committed):
        replay = replay.apply(height, committed[height])
    assert _membership_json(replay, top) == _membership_json(m, top)
    # asked from the top down (Membership.at keeps one state for the heights
    # where every change is in force), and past that, the same answers
    again = Membership.from_genesis(GENESIS)
    for height in sorted(committed):
        again = again.apply(height, committed[height])
    assert [again.at(h).to_json() for h in reversed(range(0, top + 6))] \
        == list(reversed(_membership_json(replay, top + 3)))
    # in force at h = the changes effective by h, applied one by one in log order
    for h in range(0, top + 3):
        state = replay._base
        for change in replay.changes:
            if change.effective <= h:
                state = change.action.apply(state, change.record_id)
        assert state.to_json() == replay.at(h).to_json()


def test_log_order_decides_within_a_block() -> None:
    pause = gov_record(CHAIN, MKEYS[:2], 1, "gov.scope.pause", {"scope": "kind", "value": "x"})
    resume = gov_record(CHAIN, MKEYS[:2], 2, "gov.scope.resume", {"scope": "kind", "value": "x"})
    # pause then resume in one block, both effective at 2: the first wins
    with pytest.raises(ConflictingProposal):
        Membership.from_genesis(GENESIS).apply(1, [pause, resume])
    m = Membership.from_genesis(GENESIS).apply(1, [pause])
    # across blocks the later one wins
    m = m.apply(2, [resume])
    assert m.at(2).paused == {("kind", "x")} and m.at(3).paused == frozenset()
