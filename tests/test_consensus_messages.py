"""Consensus wire messages, persisted state and evidence: round trips and
rejection of malformed input with typed errors."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.events import ProposalReceived, Start
from consensus.messages import (
    Decision,
    Proposal,
    SignedVote,
    decode_message,
    encode_message,
    sign_proposal,
    sign_vote,
)
from consensus.params import Step
from consensus.simulation.bench import Bench
from consensus.state import PersistedState, ValidValue, decode_state
from consensus.votes import Evidence, decode_evidence, verify_evidence
from ledger.blocks import Vote, VoteType, decode_vote
from ledger.encoding import H, canonical
from ledger.errors import BadEncoding, BadSignature, StorageCorruption, TooLarge, VerificationError


def _committed() -> tuple[Bench, Proposal]:
    bench = Bench()
    bench.start()
    bench.submit(bench.records(3))
    proposal = [e.message for e in bench.nodes[1].effects if isinstance(getattr(e, "message", None), Proposal)][0]
    bench.deliver()
    return bench, proposal


def test_vote_round_trip() -> None:
    bench = Bench()
    sv = sign_vote(Vote("precommit", "sim", 3, 2, H(b"x")), 1, bench.keys[1])
    again = decode_message(encode_message(sv))
    assert again == sv and isinstance(again, SignedVote)
    again.verify(bench.genesis, __import__("ledger.crypto", fromlist=["x"]).verify_signature)


def test_proposal_and_decision_round_trip() -> None:
    bench, proposal = _committed()
    again = decode_message(encode_message(proposal))
    assert isinstance(again, Proposal)
    assert again.header == proposal.header and again.sig == proposal.sig
    assert [e.envelope_bytes for e in again.envelopes] == [e.envelope_bytes for e in proposal.envelopes]
    chain = bench.nodes[0].chain
    decision = Decision(chain.headers[0], chain.blocks[0], chain.certificates[0])
    back = decode_message(encode_message(decision))
    assert isinstance(back, Decision) and back.certificate == decision.certificate


def test_proposal_with_pol_round_trip() -> None:
    bench, proposal = _committed()
    pol = tuple(sign_vote(Vote("prevote", "sim", 1, 0, proposal.block_hash), v, bench.keys[v]) for v in (0, 2, 3))
    again = sign_proposal(proposal.header, proposal.envelopes, 2, 0, bench.keys[3], pol)
    back = decode_message(encode_message(again))
    assert isinstance(back, Proposal) and back.pol == pol and back.pol_round == 0


@pytest.mark.parametrize(
    "value",
    [
        {"t": "vote"},
        {"t": "nope", "x": 1},
        [1, 2, 3],
        {"t": "vote", "vote": b"\x00", "validator": 0, "sig": b"s" * 64},
        {"t": "vote", "vote": canonical({"type": "prevote", "chain": "sim", "height": 1, "round": 0,
                                         "block": None}), "validator": -1, "sig": b"s" * 64},
        {"t": "vote", "vote": canonical({"type": "prevote", "chain": "sim", "height": 1, "round": 0,
                                         "block": None}), "validator": 0, "sig": b"short"},
        {"t": "proposal", "header": b"", "envelopes": [], "round": 0, "pol_round": 0, "pol": [],
         "sig": b"s" * 64},
        {"t": "proposal", "header": b"", "envelopes": [], "round": 1, "pol_round": -1,
         "pol": [b"x"], "sig": b"s" * 64},
        {"t": "decision", "header": b"", "envelopes": [], "certificate": b""},
    ],
)
def test_malformed_messages_raise_typed_errors(value: object) -> None:
    with pytest.raises(VerificationError):
        decode_message(canonical(value))


def test_non_canonical_and_oversized_messages_are_rejected() -> None:
    bench = Bench()
    sv = sign_vote(Vote("prevote", "sim", 1, 0, None), 0, bench.keys[0])
    data = encode_message(sv)
    with pytest.raises(VerificationError):
        decode_message(data + b"\x00")
    with pytest.raises(TooLarge):
        decode_message(data, max_size=10)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_untyped_errors(data: bytes) -> None:
    try:
        decode_message(data)
    except VerificationError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_messages_never_escape_as_untyped_errors(data: st.DataObject) -> None:
    bench = Bench()
    sv = sign_vote(Vote("prevote", "sim", 1, 0, H(b"b")), 2, bench.keys[2])
    raw = bytearray(encode_message(sv))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        decode_message(bytes(raw))
    except VerificationError:
        pass


def test_proposal_signature_binds_round_and_pol_round() -> None:
    from ledger.crypto import verify_signature

    bench, proposal = _committed()
    proposal.verify(bench.genesis, verify_signature)
    with pytest.raises(BadSignature):
        replace(proposal, round=proposal.round + 4).verify(bench.genesis, verify_signature)


# --------------------------------------------------------------------------
# Persisted state
# --------------------------------------------------------------------------


def test_persisted_state_round_trip_with_lock_valid_value_and_votes() -> None:
    bench, proposal = _committed()
    votes = tuple(sign_vote(Vote(t, "sim", 1, 0, proposal.block_hash), 0, bench.keys[0])
                  for t in ("prevote", "precommit"))
    state = PersistedState(
        height=1, round=2, step=Step.PRECOMMIT, locked_round=0, locked_block=proposal.block_hash,
        valid=ValidValue(0, proposal.header, proposal.envelopes, votes[:1]), proposed_round=1, votes=votes,
    )
    again = decode_state(state.to_bytes())
    assert again.votes == votes and again.locked_block == proposal.block_hash
    assert again.valid is not None and again.valid.block_hash == proposal.block_hash
    assert (again.height, again.round, again.step, again.proposed_round) == (1, 2, Step.PRECOMMIT, 1)


@pytest.mark.parametrize("data", [b"", b"\x81", canonical({"v": 1}), canonical([1])])
def test_damaged_state_raises_storage_corruption(data: bytes) -> None:
    with pytest.raises(StorageCorruption):
        decode_state(data)


def test_state_ahead_of_the_chain_is_refused() -> None:
    from consensus.machine import ConsensusMachine

    bench = Bench()
    state = PersistedState(height=5, round=0, step=Step.PROPOSE)
    with pytest.raises(StorageCorruption):
        ConsensusMachine(bench.genesis, 0, bench.keys[0], bench.nodes[0].app, tip=None, persisted=state)


def test_stale_state_from_an_applied_height_is_discarded() -> None:
    from consensus.machine import ConsensusMachine

    bench, _ = _committed()
    node = bench.nodes[0]
    old = PersistedState(height=1, round=3, step=Step.PRECOMMIT)
    m = ConsensusMachine(bench.genesis, 0, bench.keys[0], node.app, tip=node.chain.tip, persisted=old)
    assert (m.height, m.round) == (2, 0)
    m.handle(Start(bench.now))


# --------------------------------------------------------------------------
# Evidence
# --------------------------------------------------------------------------


def test_evidence_encodes_and_verifies_and_rejects_non_conflicts() -> None:
    bench = Bench()
    a = sign_vote(Vote("precommit", "sim", 4, 1, H(b"a")), 2, bench.keys[2])
    b = sign_vote(Vote("precommit", "sim", 4, 1, None), 2, bench.keys[2])
    ev = decode_evidence(Evidence(a, b).to_bytes())
    verify_evidence(ev, bench.genesis)
    with pytest.raises(BadEncoding):
        verify_evidence(Evidence(a, a), bench.genesis)
    other_round = sign_vote(Vote("precommit", "sim", 4, 2, None), 2, bench.keys[2])
    with pytest.raises(BadEncoding):
        verify_evidence(Evidence(a, other_round), bench.genesis)
    forged = SignedVote(b.vote, 2, a.sig)
    with pytest.raises(BadSignature):
        verify_evidence(Evidence(a, forged), bench.genesis)


def test_proposal_event_with_pol_votes_that_do_not_match_is_rejected() -> None:
    bench, proposal = _committed()
    fresh = Bench()
    fresh.start()
    wrong = (sign_vote(Vote("prevote", "sim", 1, 0, H(b"other")), 2, fresh.keys[2]),)
    p = sign_proposal(proposal.header, proposal.envelopes, 1, 0, fresh.keys[2], wrong)
    effects = fresh.step(0, ProposalReceived(p, fresh.now))
    assert any(type(e).__name__ == "Rejected" for e in effects)


@pytest.mark.parametrize("member,text", [(VoteType.PREVOTE, "prevote"), (VoteType.PRECOMMIT, "precommit")])
def test_vote_types_are_an_enum_and_the_bytes_stay_the_strings(member: VoteType, text: str) -> None:
    block = H(b"block")
    old_layout = canonical({"type": text, "chain": "sim", "height": 3, "round": 1, "block": block})
    vote = Vote(member, "sim", 3, 1, block)
    assert vote.vote_bytes == old_layout
    decoded = decode_vote(old_layout)
    assert decoded.type is member and decoded == vote
    assert Vote(text, "sim", 3, 1, block).type is member  # type: ignore[arg-type]


def test_a_vote_of_another_type_cannot_be_built() -> None:
    with pytest.raises(ValueError):
        Vote("commit", "sim", 3, 1, None)  # type: ignore[arg-type]
