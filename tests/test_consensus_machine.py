"""Unit tests of the consensus state machine on a hand-driven bench."""

from __future__ import annotations

import pytest

from consensus.events import (
    Broadcast,
    Commit,
    CommittedBlock,
    FetchBlock,
    NeedCatchUp,
    Persist,
    ProposalReceived,
    Rejected,
    SendTo,
    SetTimer,
    Start,
    VoteReceived,
)
from consensus.messages import Decision, Proposal, SignedVote, sign_proposal, sign_vote
from consensus.params import Step, Timer, proposer_for
from consensus.simulation.bench import Bench
from consensus.votes import verify_evidence
from ledger.blocks import Certificate, Vote, verify_certificate
from ledger.encoding import H
from ledger.errors import CertificateError, QuorumNotReached


def votes_of(effects: list, type_: str | None = None) -> list[SignedVote]:
    out = [e.message for e in effects if isinstance(e, Broadcast) and isinstance(e.message, SignedVote)]
    return [v for v in out if type_ is None or v.type == type_]


def proposals_of(effects: list) -> list[Proposal]:
    return [e.message for e in effects if isinstance(e, Broadcast) and isinstance(e.message, Proposal)]


def committed_bench(heights: int = 1) -> Bench:
    bench = Bench()
    bench.start()
    for _ in range(heights):
        bench.submit(bench.records(2))
        bench.deliver()
    return bench


# --------------------------------------------------------------------------
# Happy path, rotation, idleness
# --------------------------------------------------------------------------


def test_happy_path_commits_one_block_with_a_valid_certificate() -> None:
    bench = Bench()
    bench.start()
    records = bench.records(3)
    bench.submit(records)
    bench.deliver()
    for node in bench.nodes:
        assert node.chain.height == 1
        commit = node.commits[0]
        assert [e.id for e in commit.envelopes] == [e.id for e in records]
        assert commit.header.proposer == proposer_for(4, 1, 0)
        assert commit.certificate.round == 0
        verify_certificate(commit.certificate, commit.header, bench.genesis)
    assert len({n.chain.tip.hash for n in bench.nodes}) == 1  # type: ignore[union-attr]
    assert all(n.machine.height == 2 for n in bench.nodes)


def test_proposer_rotates_by_height_and_round() -> None:
    assert [proposer_for(4, 1, r) for r in range(5)] == [1, 2, 3, 0, 1]
    assert [proposer_for(7, h, 0) for h in range(1, 8)] == [1, 2, 3, 4, 5, 6, 0]
    bench = committed_bench(heights=3)
    assert [h.proposer for h in bench.nodes[0].chain.headers] == [1, 2, 3]


def test_no_proposal_and_no_timers_while_idle() -> None:
    bench = Bench()
    bench.start()
    for node in bench.nodes:
        assert not proposals_of(node.effects)
        assert not any(isinstance(e, SetTimer) for e in node.effects)
    bench.deliver()
    assert all(n.chain.height == 0 for n in bench.nodes)


def test_no_empty_block_after_pending_records_are_committed() -> None:
    bench = committed_bench(heights=1)
    for node in bench.nodes:
        node.effects.clear()
    bench.deliver()
    for node in bench.nodes:
        assert not proposals_of(node.effects)
        assert node.machine.height == 2 and not node.machine.active


def test_records_start_the_timers_of_a_waiting_validator() -> None:
    bench = Bench()
    bench.start()
    effects = bench.step(0, bench_records_event(bench, 0))
    assert SetTimer(Timer(1, 0, Step.PROPOSE), 300) in effects
    assert not proposals_of(effects)  # v0 is not the proposer of (1, 0)


def bench_records_event(bench: Bench, i: int):  # type: ignore[no-untyped-def]
    from consensus.events import RecordsAvailable

    for env in bench.records(1):
        bench.nodes[i].app.admit(env)
    return RecordsAvailable(bench.now)


def test_a_vote_for_the_current_height_starts_the_timers() -> None:
    bench = Bench()
    bench.start()
    vote = sign_vote(Vote("prevote", "sim", 1, 0, None), 2, bench.keys[2])
    effects = bench.step(0, VoteReceived(vote, bench.now))
    assert SetTimer(Timer(1, 0, Step.PROPOSE), 300) in effects


def test_the_proposer_proposes_as_soon_as_records_arrive() -> None:
    bench = Bench()
    bench.start()
    effects = bench.step(1, bench_records_event(bench, 1))
    (proposal,) = proposals_of(effects)
    assert proposal.round == 0 and proposal.pol_round == -1 and proposal.header.proposer == 1
    # persisted before it was broadcast
    kinds = [type(e).__name__ for e in effects]
    assert kinds.index("Persist") < kinds.index("Broadcast")


# --------------------------------------------------------------------------
# Round change, nil votes
# --------------------------------------------------------------------------


def test_silent_proposer_round_change_with_nil_votes_then_next_proposer_commits() -> None:
    bench = Bench()
    bench.start()
    records = bench.records(2)
    bench.submit(records, nodes=[0, 2, 3])  # v1, proposer of (1, 0), has nothing
    assert not bench.outbox
    bench.fire_all(Step.PROPOSE, nodes=[0, 2, 3])
    nil_prevotes = [m for m in bench.sent() if isinstance(m, SignedVote)]
    assert {(v.type, v.block) for v in nil_prevotes} == {("prevote", None)}
    bench.deliver()  # quorum of nil prevotes -> nil precommits -> precommit timers
    assert all(n.machine.step == Step.PRECOMMIT for n in bench.nodes if n.index != 1)
    bench.fire_all(Step.PRECOMMIT, nodes=[0, 2, 3])
    bench.deliver()
    for node in bench.nodes:
        assert node.chain.height == 1, node.index
        assert node.chain.headers[0].proposer == proposer_for(4, 1, 1) == 2
        assert node.chain.certificates[0].round == 1


def test_timeouts_grow_with_the_round() -> None:
    bench = Bench()
    assert [bench.config.timeout_ms(Step.PROPOSE, r) for r in range(3)] == [300, 400, 500]


def test_f_plus_one_votes_from_a_later_round_make_a_validator_skip_ahead() -> None:
    bench = Bench()
    bench.start()
    for v in (2, 3):
        vote = sign_vote(Vote("prevote", "sim", 1, 5, None), v, bench.keys[v])
        bench.step(0, VoteReceived(vote, bench.now))
    assert bench.nodes[0].machine.round == 5


# --------------------------------------------------------------------------
# Locking
# --------------------------------------------------------------------------


def _only(pairs: set[tuple[int, int]], type_: str):  # type: ignore[no-untyped-def]
    """Deliver votes of ``type_`` only along (src, dst) ``pairs``; everything else goes through."""
    def keep(e, dst):  # type: ignore[no-untyped-def]
        m = e.message
        return not (isinstance(m, SignedVote) and m.type == type_) or (e.src, dst) in pairs
    return keep


# Every validator hears two prevotes besides its own, never three for one block.
NO_POLKA_EXCEPT_V0 = {(1, 0), (2, 0), (3, 0), (0, 1), (3, 1), (1, 2), (3, 2), (0, 3), (1, 3)}
NO_POLKA = {(1, 0), (2, 0), (0, 1), (2, 1), (0, 2), (1, 2), (0, 3), (1, 3)}


def test_locked_validator_prevotes_nil_for_another_block_then_a_pol_reproposal_commits() -> None:
    bench = Bench()
    bench.start()
    bench.submit(bench.records(2), nodes=[0, 1, 2, 3])
    (block_a,) = proposals_of(bench.nodes[1].effects)
    # Round 0: v3 misses the proposal and prevotes nil; only v0 sees the polka for A.
    bench.deliver(keep=lambda e, dst: not (isinstance(e.message, Proposal) and dst == 3) and _only(
        NO_POLKA_EXCEPT_V0, "prevote")(e, dst))
    bench.fire(3, Step.PROPOSE)
    bench.deliver(keep=_only(NO_POLKA_EXCEPT_V0, "prevote"))
    v0 = bench.nodes[0].machine
    assert (v0.locked_round, v0.locked_block) == (0, block_a.block_hash)
    bench.fire_all(Step.PREVOTE, nodes=[1, 2, 3])
    bench.deliver()
    assert [n.machine.step for n in bench.nodes] == [Step.PRECOMMIT] * 4
    bench.fire_all(Step.PRECOMMIT)
    # Round 1: v2 never saw a polka and proposes a fresh block B.
    (block_b,) = bench.sent(2, Proposal)
    assert block_b.round == 1 and block_b.block_hash != block_a.block_hash
    bench.deliver(keep=_only(NO_POLKA, "prevote"))
    prevotes = {i: votes_of(bench.nodes[i].effects, "prevote")[-1] for i in range(4)}
    assert prevotes[0].round == 1 and prevotes[0].block is None  # locked on A: nil for B
    assert all(prevotes[i].block == block_b.block_hash for i in (1, 2, 3))
    bench.fire_all(Step.PREVOTE)
    bench.deliver()
    bench.fire_all(Step.PRECOMMIT)
    # Round 2: v3's proposal is lost; everyone times out with nil.
    bench.drop_outbox()
    bench.fire_all(Step.PROPOSE)
    bench.deliver()
    bench.fire_all(Step.PRECOMMIT)
    # Round 3: v0 still holds A as its valid value and re-proposes it with its POL.
    (again,) = bench.sent(0, Proposal)
    assert (again.round, again.pol_round, again.block_hash) == (3, 0, block_a.block_hash)
    assert len(again.pol) >= bench.genesis.quorum
    bench.deliver()
    for node in bench.nodes:
        assert node.chain.height == 1 and node.chain.tip.hash == block_a.block_hash  # type: ignore[union-attr]
        assert node.chain.certificates[0].round == 3


def test_votes_lost_before_stabilisation_are_resent() -> None:
    bench = Bench()
    bench.start()
    bench.submit(bench.records(1))
    bench.drop_outbox()  # the proposal is lost
    bench.fire_all(Step.PROPOSE)
    bench.drop_outbox()  # so are all the nil prevotes: nobody can time out of prevote
    assert all(n.machine.step == Step.PREVOTE for n in bench.nodes)
    bench.resend()
    assert {type(m).__name__ for m in bench.sent()} == {"SignedVote", "Proposal"}  # v1 re-sends both
    bench.deliver()
    bench.fire_all(Step.PRECOMMIT)
    bench.deliver()
    assert all(n.chain.height == 1 for n in bench.nodes)
    assert bench.nodes[0].chain.certificates[0].round == 1


# --------------------------------------------------------------------------
# Evidence
# --------------------------------------------------------------------------


def test_conflicting_votes_become_evidence() -> None:
    bench = Bench()
    bench.start()
    a = sign_vote(Vote("prevote", "sim", 1, 0, H(b"a")), 3, bench.keys[3])
    b = sign_vote(Vote("prevote", "sim", 1, 0, H(b"b")), 3, bench.keys[3])
    bench.step(0, VoteReceived(a, bench.now))
    effects = bench.step(0, VoteReceived(b, bench.now))
    (found,) = [e for e in effects if type(e).__name__ == "EvidenceFound"]
    assert (found.evidence.first, found.evidence.second) == (a, b)
    assert bench.nodes[0].machine.evidence == [found.evidence]
    verify_evidence(found.evidence, bench.genesis)
    again = bench.step(0, VoteReceived(b, bench.now))
    assert not [e for e in again if type(e).__name__ == "EvidenceFound"]


def test_forged_vote_is_rejected_not_counted() -> None:
    bench = Bench()
    bench.start()
    vote = sign_vote(Vote("prevote", "sim", 1, 0, None), 3, bench.keys[2])  # v2's key, claims v3
    effects = bench.step(0, VoteReceived(vote, bench.now))
    assert any(isinstance(e, Rejected) for e in effects)
    assert bench.nodes[0].machine.votes.peek(0, "prevote") is None


# --------------------------------------------------------------------------
# Crash safety: never sign a conflicting vote after a restart
# --------------------------------------------------------------------------


def _conflicting_proposal(bench: Bench, proposal: Proposal) -> Proposal:
    from dataclasses import replace

    other = replace(proposal.header, time=proposal.header.time + 1, header_bytes=b"")
    return sign_proposal(other, proposal.envelopes, proposal.round, -1, bench.keys[1])


def test_crash_between_persist_and_send_then_conflicting_proposal_signs_nothing_new() -> None:
    bench = Bench()
    bench.start()
    bench.submit(bench.records(2))
    (proposal,) = proposals_of(bench.nodes[1].effects)
    bench.drop_outbox()
    effects = bench.step(0, ProposalReceived(proposal, bench.now), apply_upto=0)
    cut = [i for i, e in enumerate(effects) if isinstance(e, Persist)][0] + 1
    assert isinstance(effects[cut], Broadcast)
    for effect in effects[:cut]:  # the node dies right after the Persist
        bench._apply(bench.nodes[0], effect)
    (signed,) = votes_of(effects, "prevote")
    assert signed.block == proposal.block_hash
    assert not bench.outbox  # crashed right after the Persist: nothing left the node
    restart_effects = bench.restart(0)
    assert votes_of(restart_effects) == [signed]  # re-sent, byte-identical
    m = bench.nodes[0].machine
    assert (m.height, m.round, m.step) == (1, 0, Step.PREVOTE)
    after = bench.step(0, ProposalReceived(_conflicting_proposal(bench, proposal), bench.now))
    after += bench.fire(0, Step.PREVOTE) if Timer(1, 0, Step.PREVOTE) in bench.nodes[0].timers else []
    prevotes = [v for v in votes_of(after, "prevote") if v.round == 0]
    assert all(v == signed for v in prevotes)


def test_restart_after_a_commit_discards_the_stale_state_and_goes_on() -> None:
    # Nothing is persisted for a height before its first send, so a validator
    # that crashes right after a commit holds the decided height's state: it
    # must restart fresh at the next height and take part in it normally.
    bench = committed_bench(heights=1)
    node = bench.nodes[2]
    assert node.chain.height == 1 and node.last_persisted is not None
    assert node.last_persisted.height == 1
    bench.restart(2)
    m = node.machine
    assert (m.height, m.round, m.step) == (2, 0, Step.PROPOSE) and not m.own_votes
    bench.submit(bench.records(2))
    bench.deliver()
    for n in bench.nodes:
        assert n.chain.height == 2
        assert not n.machine.evidence
    assert node.last_persisted is not None and node.last_persisted.height == 2


def test_restart_in_propose_step_with_a_persisted_prevote_reuses_it() -> None:
    """Even if a stale step were persisted, the stored vote wins over a new signature."""
    bench = Bench()
    bench.start()
    bench.submit(bench.records(1))
    (proposal,) = proposals_of(bench.nodes[1].effects)
    bench.step(0, ProposalReceived(proposal, bench.now))
    node = bench.nodes[0]
    state = node.last_persisted
    assert state is not None
    from dataclasses import replace

    node.stored = replace(state, step=Step.PROPOSE).to_bytes()
    bench.restart(0)
    effects = bench.step(0, ProposalReceived(_conflicting_proposal(bench, proposal), bench.now))
    assert all(v.block == proposal.block_hash for v in votes_of(effects, "prevote"))


def test_lock_survives_a_restart() -> None:
    bench = Bench()
    bench.start()
    bench.submit(bench.records(1))
    bench.deliver(keep=lambda e, dst: isinstance(e.message, Proposal) or dst == 0)
    locked = bench.nodes[0].machine.locked_block
    assert locked is not None
    bench.restart(0)
    m = bench.nodes[0].machine
    assert (m.locked_round, m.locked_block) == (0, locked)
    assert m.valid is not None and m.valid.block_hash == locked and len(m.valid.pol) >= 3


def test_restarted_proposer_does_not_propose_twice_in_a_round() -> None:
    bench = Bench()
    bench.start()
    bench.submit(bench.records(1), nodes=[1])
    assert len(bench.sent(1, Proposal)) == 1
    bench.drop_outbox()
    effects = bench.restart(1)
    assert not proposals_of(effects)


# --------------------------------------------------------------------------
# Invalid proposals
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,error",
    [
        ("bad-tx-root", "TxRootMismatch"),
        ("bad-log-root", "LogMismatch"),
        ("wrong-prev", "PrevMismatch"),
        ("bad-signature", "BadSignature"),
        ("duplicate-record", "DuplicateRecord"),
        ("nonce-reuse", "NonceAlreadyUsed"),
        ("dangling-parent", "ParentNotCommitted"),
        ("parent-after-child", "ParentNotCommitted"),
        ("forbidden-role", "ForbiddenRole"),
        ("unknown-submitter", "UnknownSubmitter"),
        ("record-wrong-chain", "WrongChain"),
        ("wrong-validators", "ValidatorSetMismatch"),
        ("future-time", "BlockFromFuture"),
        ("wrong-proposer", "WrongProposer"),
        ("tx-count", "TxCountMismatch"),
        ("empty", "EmptyBlock"),
    ],
)
def test_invalid_proposal_gets_nil_prevotes_and_a_named_rejection(kind: str, error: str) -> None:
    import random

    from consensus.simulation.mutations import mutate

    bench = Bench()
    bench.start()
    bench.submit(bench.records(2))
    (good,) = proposals_of(bench.nodes[1].effects)
    bench.drop_outbox()
    header, envelopes = mutate(kind, good.header, good.envelopes, bench.nodes[1].chain, random.Random(1), 4)
    bad = sign_proposal(header, envelopes, 0, -1, bench.keys[1])
    effects = bench.step(0, ProposalReceived(bad, bench.now))
    (prevote,) = votes_of(effects, "prevote")
    assert prevote.block is None
    rejected = [e for e in effects if isinstance(e, Rejected)]
    assert rejected and type(rejected[0].error).__name__ == error, rejected


def test_wrong_chain_header_is_ignored_and_proposal_from_wrong_proposer_rejected() -> None:
    bench = Bench()
    bench.start()
    bench.submit(bench.records(1))
    (good,) = proposals_of(bench.nodes[1].effects)
    forged = sign_proposal(good.header, good.envelopes, 0, -1, bench.keys[2])  # not v1's turn
    effects = bench.step(0, ProposalReceived(forged, bench.now))
    assert any(isinstance(e, Rejected) for e in effects) and not votes_of(effects)


# --------------------------------------------------------------------------
# Catch-up
# --------------------------------------------------------------------------


def test_committed_block_event_lets_a_lagging_validator_jump_ahead() -> None:
    bench = committed_bench(heights=2)
    src = bench.nodes[1].chain
    lagging = Bench()
    lagging.start()
    for h in (1, 2):
        event = CommittedBlock(src.headers[h - 1], src.blocks[h - 1], src.certificates[h - 1], bench.now)
        effects = lagging.step(0, event)
        assert any(isinstance(e, Commit) for e in effects)
    assert lagging.nodes[0].chain.height == 2 and lagging.nodes[0].machine.height == 3


def test_committed_block_with_too_few_signatures_is_rejected() -> None:
    bench = committed_bench(heights=1)
    chain = bench.nodes[1].chain
    cert = chain.certificates[0]
    weak = Certificate(cert.height, cert.round, cert.block, cert.signatures[:2])
    lagging = Bench()
    lagging.start()
    effects = lagging.step(0, CommittedBlock(chain.headers[0], chain.blocks[0], weak, bench.now))
    (rejected,) = [e for e in effects if isinstance(e, Rejected)]
    assert isinstance(rejected.error, QuorumNotReached)
    assert lagging.nodes[0].chain.height == 0


@pytest.mark.parametrize("extra", [7, 0])
def test_committed_block_with_one_bad_extra_signature_is_rejected_by_the_ledger_check(extra: int) -> None:
    """A quorum plus one unknown or repeated signer: invalid (protocol §4),
    with the very error ledger.blocks.verify_certificate gives."""
    bench = committed_bench(heights=1)
    chain = bench.nodes[1].chain
    cert = chain.certificates[0]
    bad = Certificate(cert.height, cert.round, cert.block,
                      cert.signatures + ((extra, cert.signatures[0][1]),))
    with pytest.raises(CertificateError) as ledger_error:
        verify_certificate(bad, chain.headers[0], bench.genesis)
    lagging = Bench()
    lagging.start()
    effects = lagging.step(0, CommittedBlock(chain.headers[0], chain.blocks[0], bad, bench.now))
    (rejected,) = [e for e in effects if isinstance(e, Rejected)]
    assert isinstance(rejected.error, CertificateError)
    assert str(rejected.error) == str(ledger_error.value)
    assert lagging.nodes[0].chain.height == 0


def test_messages_from_f_plus_one_validators_two_heights_ahead_ask_for_catch_up() -> None:
    bench = Bench()
    bench.start()
    effects = []
    for v in (2, 3):
        vote = sign_vote(Vote("prevote", "sim", 3, 0, None), v, bench.keys[v])
        effects += bench.step(0, VoteReceived(vote, bench.now))
    assert NeedCatchUp(2) in effects


def test_quorum_of_precommits_without_the_block_asks_to_fetch_it() -> None:
    bench = Bench()
    bench.start()
    block = H(b"some block")
    effects = []
    for v in (1, 2, 3):
        vote = sign_vote(Vote("precommit", "sim", 1, 0, block), v, bench.keys[v])
        effects += bench.step(0, VoteReceived(vote, bench.now))
    assert effects.count(FetchBlock(1, block)) == 1


def test_fetched_proposal_completes_the_decision() -> None:
    bench = Bench()
    bench.start()
    bench.submit(bench.records(1))
    # v0 hears nothing until everyone else has decided.
    bench.deliver(keep=lambda e, dst: dst != 0)
    assert all(n.chain.height == 1 for n in bench.nodes[1:])
    done = bench.nodes[1].chain
    precommits = [sign_vote(Vote("precommit", "sim", 1, 0, done.tip.hash), v, bench.keys[v])  # type: ignore[union-attr]
                  for v in (1, 2, 3)]
    effects = []
    for pc in precommits:
        effects += bench.step(0, VoteReceived(pc, bench.now))
    fetch = [e for e in effects if isinstance(e, FetchBlock)]
    assert fetch and bench.nodes[0].chain.height == 0
    decision = Decision(done.headers[0], done.blocks[0], done.certificates[0])
    bench.step(0, CommittedBlock(decision.header, decision.envelopes, decision.certificate, bench.now))
    assert bench.nodes[0].chain.height == 1


def test_validator_past_the_deciding_round_is_sent_the_decision() -> None:
    bench = committed_bench(heights=1)
    late = sign_vote(Vote("prevote", "sim", 1, 3, None), 0, bench.keys[0])
    effects = bench.step(2, VoteReceived(late, bench.now))
    (send,) = [e for e in effects if isinstance(e, SendTo)]
    assert send.validator == 0 and isinstance(send.message, Decision) and send.message.height == 1
    assert not [e for e in bench.step(2, VoteReceived(late, bench.now)) if isinstance(e, SendTo)]


def test_only_state_behind_a_send_is_persisted() -> None:
    # Every Persist is an fsync on the consensus path: a fresh height, a step
    # change or a commit writes nothing; the first signed message is persisted
    # (with everything before it) right before it leaves.
    bench = Bench()
    assert not [e for e in bench.nodes[0].machine.handle(Start(bench.now))
                if isinstance(e, Persist)]
    bench = committed_bench(heights=2)
    for node in bench.nodes:
        assert node.machine.height == 3
        persisted = [e.state for e in node.effects if isinstance(e, Persist)]
        sends = [e for e in node.effects if isinstance(e, (Broadcast, SendTo))]
        assert sends and persisted
        assert len(persisted) <= len(sends)
        assert all(state.height <= 2 for state in persisted)  # none for height 3
    for node in bench.nodes:
        kinds = [type(e).__name__ for e in node.effects]
        first_send = min(kinds.index(k) for k in ("Broadcast", "SendTo") if k in kinds)
        assert "Persist" in kinds[:first_send]


def test_persisted_state_bytes_are_the_canonical_map() -> None:
    """PersistedState.to_bytes packs its map without the canonical walk:
    the same bytes as ``canonical`` of it, with and without a valid value,
    and they decode back to the same state."""
    from dataclasses import replace

    from consensus.messages import encode_message
    from consensus.params import NIL_ROUND
    from consensus.state import STATE_VERSION, decode_state
    from ledger.encoding import canonical

    bench = Bench()
    bench.start()
    bench.submit(bench.records(3))
    bench.deliver(keep=lambda e, dst: isinstance(e.message, Proposal) or dst == 0)
    state = bench.nodes[0].last_persisted
    assert state is not None and state.valid is not None and state.votes
    for s in (state, replace(state, valid=None, locked_block=None, locked_round=NIL_ROUND),
              replace(state, votes=())):
        valid = s.valid
        expected = canonical({
            "v": STATE_VERSION, "height": s.height, "round": s.round, "step": int(s.step),
            "locked_round": s.locked_round, "locked_block": s.locked_block,
            "valid_round": valid.round if valid else NIL_ROUND,
            "valid_header": valid.header.header_bytes if valid else None,
            "valid_envelopes": [e.envelope_bytes for e in valid.envelopes] if valid else [],
            "valid_pol": [encode_message(v) for v in valid.pol] if valid else [],
            "proposed_round": s.proposed_round,
            "votes": [encode_message(v) for v in s.votes]})
        assert s.to_bytes() == expected
        assert decode_state(expected) == s
