"""Verdicts in the certified chain (PROTOCOL §10.5-10.8): bytes, header
version 2, validation, storage, approvals and the replay that rebuilds them."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import as_genesis, block_time, certify, genesis_doc, make_envelope, make_keys
from policy_fakes import LimitPolicy

from ledger import schema
from ledger.approvals import (
    DEFAULT_APPROVAL_WINDOW_MS,
    REASON_EXPIRED,
    REASON_NOT_APPROVER,
    REASON_NOT_HELD,
    REASON_REPEAT,
    REASON_SELF,
    VerdictMismatch,
)
from ledger.blocks import Header, decode_header
from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.encoding import canonical
from ledger.errors import HeaderError
from ledger.genesis import Genesis
from ledger.policy import Outcome, PolicyEngine
from ledger.policy_replay import PolicyDisagreement, PolicyReplay
from ledger.records import Envelope
from ledger.storage import MemoryStore
from ledger.verdicts import (
    Status,
    Transition,
    Verdict,
    VerdictError,
    decode_transition,
    decode_verdict,
    verdict_root,
)


class Keys:
    def __init__(self) -> None:
        self.validators = make_keys(4)
        # 0: the payer; 1-3: treasury approvers; 4: an ordinary submitter
        self.subs = make_keys(5, 1_000_000)


def _genesis(keys: Keys, params: dict[str, Any] | None = None) -> Genesis:
    doc = genesis_doc(keys.validators, keys.subs, "test", params=params)
    for i, sub in enumerate(doc["submitters"]):
        sub["roles"] = ["submit", "treasury"] if i in (0, 1, 2, 3) else ["submit"]
    return as_genesis(doc)


@pytest.fixture
def keys() -> Keys:
    return Keys()


def _commit(chain: ChainStore, keys: Keys, envelopes: list[Envelope],
            time: int | None = None) -> Header:
    height = chain.height + 1
    header = chain.next_header(envelopes, block_time(height) if time is None else time,
                               (height - 1) % 4)
    chain.commit_block(header, envelopes, certify(header, keys.validators, chain.genesis))
    return header


def _pay(key: SigningKey, nonce: int, amount: int, kind: str = "payment") -> Envelope:
    return make_envelope(key, "test", nonce, kind=kind, body={"amount": amount, "currency": "EUR"})


def _approve(key: SigningKey, nonce: int, target: bytes) -> Envelope:
    return make_envelope(key, "test", nonce, parents=[target], kind="approval", body={})


def _chain(keys: Keys, engine: PolicyEngine | None = None,
           store: MemoryStore | None = None) -> ChainStore:
    chain = ChainStore(store if store is not None else MemoryStore(), _genesis(keys))
    if engine is not None:
        chain.set_policy_engine(engine)
    return chain


# ------------------------------------------------------------------ bytes


def test_verdict_bytes_are_canonical_and_round_trip() -> None:
    v = Verdict(b"\x01" * 32, Outcome.APPROVE, "large", "", 2, "treasury", 7, 1234)
    data = v.to_bytes()
    assert decode_verdict(data) == v
    assert data == canonical({"approvals": 2, "deadline": 1234, "outcome": "approve",
                              "policy": 7, "reason": "", "record": b"\x01" * 32,
                              "role": "treasury", "rule": "large"})
    t = Transition(b"\x02" * 32, Status.APPROVED, (b"\x03" * 32,))
    assert decode_transition(t.to_bytes()) == t


@pytest.mark.parametrize("change", [
    {"outcome": "maybe"}, {"record": b"\x01" * 31}, {"approvals": -1}, {"extra": 1},
    {"rule": "x" * 257}, {"approvals": 2},  # approvals on an allow verdict
])
def test_verdict_decoder_refuses_malformed_bytes(change: dict[str, Any]) -> None:
    doc = {"approvals": 0, "deadline": 0, "outcome": "allow", "policy": 1, "reason": "",
           "record": b"\x01" * 32, "role": "", "rule": "r"}
    with pytest.raises(VerdictError):
        decode_verdict(canonical({**doc, **change}))


def test_a_verdict_never_decodes_as_a_transition() -> None:
    v = Verdict(b"\x01" * 32, Outcome.ALLOW).to_bytes()
    with pytest.raises(VerdictError):
        decode_transition(v)
    # and the leaves differ by their domain line even for equal bytes
    assert verdict_root([v], 1) != verdict_root([v], 0)


# ------------------------------------------------------------------ headers


def test_no_policy_blocks_stay_version_1(keys: Keys) -> None:
    chain = _chain(keys)
    env = _pay(keys.subs[0], 1, 50)
    header = _commit(chain, keys, [env])
    assert header.version == 1 and header.verdicts is None
    assert b"verdicts" not in header.header_bytes
    rv = chain.record_verdict(env.id)
    assert rv is not None and rv.verdict.outcome == Outcome.ALLOW and rv.index == -1
    assert rv.status == Status.ALLOWED and rv.verdict.policy == 0
    assert chain.verdict_entries(1) is None


def test_version_2_header_round_trips_and_version_keys_must_match(keys: Keys) -> None:
    chain = _chain(keys, LimitPolicy())
    header = _commit(chain, keys, [_pay(keys.subs[0], 1, 50)])
    assert header.version == 2 and header.verdicts is not None
    assert decode_header(header.header_bytes) == header
    fields = {k: v for k, v in header._as_map().items()}
    with pytest.raises(HeaderError):
        decode_header(canonical({**fields, "v": 1}))
    without = {k: v for k, v in fields.items() if k != "verdicts"}
    with pytest.raises(HeaderError):
        decode_header(canonical(without))  # v 2 without its root
    with pytest.raises(HeaderError):
        decode_header(canonical({**fields, "v": 3}))


def test_a_chain_stays_version_2_once_a_policy_was_in_force(keys: Keys) -> None:
    engine = LimitPolicy()
    chain = _chain(keys, engine)
    _commit(chain, keys, [_pay(keys.subs[0], 1, 50)])
    engine._version = 0  # the policy removed: verdicts are still committed
    header = _commit(chain, keys, [_pay(keys.subs[0], 2, 50)])
    assert header.version == 2


# ------------------------------------------------------------------ validation


def test_verdicts_are_committed_and_a_denied_record_is_committed_with_its_verdict(
        keys: Keys) -> None:
    chain = _chain(keys, LimitPolicy())
    ok, bad, flagged = (_pay(keys.subs[0], 1, 50), _pay(keys.subs[0], 2, 50, "blocked"),
                        _pay(keys.subs[4], 3, 5, "flagged"))
    _commit(chain, keys, [ok, bad, flagged])
    assert chain.record_location(bad.id) is not None
    got = {e.id: chain.record_verdict(e.id) for e in (ok, bad, flagged)}
    assert got[ok.id] is not None and got[ok.id].status == Status.ALLOWED  # type: ignore[union-attr]
    denied = got[bad.id]
    assert denied is not None and denied.status == Status.DENIED
    assert (denied.verdict.rule, denied.verdict.reason, denied.verdict.policy) == \
        ("no_blocked", "blocked_kind", 1)
    assert got[flagged.id] is not None and got[flagged.id].status == Status.REVIEW  # type: ignore[union-attr]
    entries = chain.verdict_entries(1)
    assert entries is not None and [decode_verdict(e).record for e in entries] == \
        [ok.id, bad.id, flagged.id]
    assert chain.header(1).verdicts == verdict_root(entries, 3)  # type: ignore[union-attr]


def test_a_block_whose_verdicts_differ_is_refused(keys: Keys) -> None:
    """A proposer with another policy builds a header this validator refuses,
    whether it would vote on it or commit it with a certificate."""
    honest = _chain(keys, LimitPolicy())
    lax = _chain(keys, LimitPolicy(deny_kind="nothing"))
    envs = [_pay(keys.subs[0], 1, 50, "blocked")]
    header = lax.next_header(envs, block_time(1), 0)
    with pytest.raises(VerdictMismatch):
        honest.check_block(header, envs)
    with pytest.raises(VerdictMismatch):
        honest.commit_block(header, envs, certify(header, keys.validators, honest.genesis))
    assert honest.height == 0
    # A node without a policy refuses a version 2 block, and the other way round.
    with pytest.raises(VerdictMismatch):
        _chain(keys).check_block(header, envs)
    plain = _chain(keys).next_header(envs, block_time(1), 0)
    with pytest.raises(VerdictMismatch):
        honest.check_block(plain, envs)


# ------------------------------------------------------------------ approvals


def test_k_distinct_approvers_approve_a_held_record(keys: Keys) -> None:
    store = MemoryStore()
    chain = _chain(keys, LimitPolicy(), store)
    big = _pay(keys.subs[0], 1, 50_000)
    _commit(chain, keys, [big])
    rv = chain.record_verdict(big.id)
    assert rv is not None and rv.status == Status.HELD
    assert (rv.verdict.approvals, rv.verdict.role) == (2, "treasury")
    assert rv.verdict.deadline == block_time(1) + DEFAULT_APPROVAL_WINDOW_MS
    assert big.id in chain.verdicts.held
    stray = make_envelope(keys.subs[1], "test", 9, kind="approval", body={})
    attempts = [_approve(keys.subs[0], 2, big.id),   # the submitter itself
                _approve(keys.subs[4], 3, big.id),   # no treasury role
                _approve(keys.subs[1], 4, big.id),   # counts
                _approve(keys.subs[1], 5, big.id),   # the same approver again
                stray]
    _commit(chain, keys, attempts)
    reasons = [chain.record_verdict(e.id).verdict.reason for e in attempts]  # type: ignore[union-attr]
    assert reasons == [REASON_SELF, REASON_NOT_APPROVER, "", REASON_REPEAT, "bad_approval"]
    assert chain.record_verdict(big.id).status == Status.HELD  # type: ignore[union-attr]
    # A restart reads the held record back with its counted approval.
    reopened = _chain(keys, LimitPolicy(), store)
    assert reopened.verdicts.held == chain.verdicts.held
    last = _approve(keys.subs[2], 6, big.id)
    _commit(reopened, keys, [last])
    final = reopened.record_verdict(big.id)
    assert final is not None and final.status == Status.APPROVED and final.final_height == 3
    assert final.transition is not None
    assert final.transition.approvals == (attempts[2].id, last.id)
    assert not reopened.verdicts.held
    assert store.get(schema.held_key(big.id)) is None
    # An approval after the transition finds nothing held.
    late = _approve(keys.subs[3], 7, big.id)
    _commit(reopened, keys, [late])
    assert reopened.record_verdict(late.id).verdict.reason == REASON_NOT_HELD  # type: ignore[union-attr]


def test_a_held_record_expires_at_the_first_block_past_its_deadline(keys: Keys) -> None:
    chain = _chain(keys, LimitPolicy())
    big = _pay(keys.subs[0], 1, 50_000)
    first = _commit(chain, keys, [big])
    deadline = first.time + DEFAULT_APPROVAL_WINDOW_MS
    _commit(chain, keys, [_approve(keys.subs[1], 2, big.id)], time=deadline)  # on time
    late = _approve(keys.subs[2], 3, big.id)
    _commit(chain, keys, [late], time=deadline + 1)
    assert chain.record_verdict(late.id).verdict.reason == REASON_EXPIRED  # type: ignore[union-attr]
    rv = chain.record_verdict(big.id)
    assert rv is not None and rv.status == Status.EXPIRED and rv.final_height == 3
    assert rv.transition is not None and len(rv.transition.approvals) == 1


def test_a_record_and_its_approvals_in_one_block(keys: Keys) -> None:
    chain = _chain(keys, LimitPolicy(approvals=1))
    big = _pay(keys.subs[0], 1, 50_000)
    _commit(chain, keys, [big, _approve(keys.subs[3], 2, big.id)])
    rv = chain.record_verdict(big.id)
    assert rv is not None and rv.status == Status.APPROVED and rv.final_height == 1
    entries = chain.verdict_entries(1)
    assert entries is not None and len(entries) == 3  # two verdicts, one transition


# ------------------------------------------------------------------ replay


def _blocks(chain: ChainStore) -> list[tuple[Header, list[Envelope], list[bytes] | None]]:
    from ledger.records import decode_committed_envelope

    out = []
    for h in range(1, chain.height + 1):
        header = chain.header(h)
        assert header is not None
        envs = [decode_committed_envelope(e) for e in chain.block_envelopes(h)]
        out.append((header, envs, chain.verdict_entries(h)))
    return out


def test_replay_agrees_with_every_committed_verdict_and_names_the_first_disagreement(
        keys: Keys) -> None:
    chain = _chain(keys, LimitPolicy(burst=2))
    big = _pay(keys.subs[0], 1, 50_000)
    _commit(chain, keys, [big, _pay(keys.subs[0], 2, 10)])
    _commit(chain, keys, [_pay(keys.subs[0], 3, 10), _approve(keys.subs[1], 4, big.id)])
    blocks = _blocks(chain)
    replay = PolicyReplay(chain.genesis, LimitPolicy(burst=2))
    for header, envs, entries in blocks:
        replay.block(header, envs, entries)
    assert replay.state.held == chain.verdicts.held and replay.verdicts == 4
    other = PolicyReplay(chain.genesis, LimitPolicy(burst=3))  # another velocity limit
    other.block(*blocks[0])
    with pytest.raises(PolicyDisagreement) as caught:
        other.block(*blocks[1])
    d = caught.value.disagreement
    assert (d.height, d.index) == (2, 0) and d.record == blocks[1][1][0].id
