"""Compact proposals (leaf hashes on the wire) and their reassembly."""

from __future__ import annotations

import pytest

from consensus import Proposal, encode_message
from consensus.messages import sign_proposal, sign_vote
from consensus.params import proposer_for
from ledger.blocks import Vote
from ledger.chain import ChainStore
from ledger.encoding import canonical, decode
from ledger.errors import BadEncoding, DecodeError
from ledger.genesis import parse_genesis
from ledger.records import Envelope
from ledger.storage import MemoryStore
from node.assembly import (
    MAX_BUSY_WAIT_MS,
    MAX_PARKED,
    Fetch,
    ProposalAssembler,
    compact_proposal,
    decode_compact,
    split_leaves,
)
from tests.helpers import make_envelope, make_genesis

FETCH_AFTER = 200
REFETCH = 500


@pytest.fixture
def block() -> tuple[bytes, Proposal, list[Envelope]]:
    """An encoded proposal of 6 records (the last two children of the first)."""
    doc, validator_keys, submitter = make_genesis()
    genesis = parse_genesis(doc)
    chain = ChainStore(MemoryStore(), genesis)
    envs = [make_envelope(submitter, genesis.chain, n) for n in range(4)]
    envs += [make_envelope(submitter, genesis.chain, 10 + n, parents=[envs[0].id]) for n in range(2)]
    proposer = proposer_for(genesis.n, 1, 0)
    header = chain.next_header(envs, 1_700_000_000_000, proposer)
    proposal = sign_proposal(header, envs, 0, -1, validator_keys[proposer])
    return encode_message(proposal), proposal, envs


def assembler(known: dict[bytes, Envelope]) -> ProposalAssembler:
    return ProposalAssembler(known.get, fetch_after_ms=FETCH_AFTER, refetch_ms=REFETCH)


def test_compact_form_is_small_and_reassembles_to_the_same_proposal(block):
    message, _, envs = block
    compact = compact_proposal(message)
    assert compact is not None
    bare, leaves = compact
    assert leaves == b"".join(e.leaf_hash for e in envs)
    assert decode(bare)["envelopes"] == []
    assert len(bare) + len(leaves) < len(message)

    parsed, leaf_list = decode_compact(bare, leaves)
    whole = assembler({e.leaf_hash: e for e in envs}).offer(2, parsed, leaf_list, now_ms=0)
    assert whole is not None
    assert encode_message(whole) == message


def test_other_messages_travel_unchanged(block):
    _, proposal, _ = block
    _, keys, _ = make_genesis()
    vote = sign_vote(Vote("prevote", proposal.header.chain, 1, 0, proposal.block_hash), 0, keys[0])
    assert compact_proposal(encode_message(vote)) is None
    assert encode_message(vote)[:2] == b"\x84\xa3"  # told apart without decoding it


def test_a_decision_travels_compact_and_reassembles_to_the_same_decision(block):
    from consensus import Decision
    from tests.helpers import certify

    _, proposal, envs = block
    doc, keys, _ = make_genesis()
    decision = Decision(proposal.header, proposal.envelopes,
                        certify(proposal.header, keys, doc, round=3))
    message = encode_message(decision)
    compact = compact_proposal(message)
    assert compact is not None
    bare, leaves = compact
    assert len(bare) + len(leaves) < len(message)
    parsed, leaf_list = decode_compact(bare, leaves)
    assert isinstance(parsed, Decision) and parsed.envelopes == ()
    # every envelope known here: complete at once
    whole = assembler({e.leaf_hash: e for e in envs}).offer(1, parsed, leaf_list, now_ms=0)
    assert whole is not None and encode_message(whole) == message
    # some missing: parked apart from a proposal of the same block, fetched, completed
    asm = assembler({e.leaf_hash: e for e in envs[2:]})
    assert asm.offer(1, parsed, leaf_list, now_ms=0) is None
    assert asm.offer(2, proposal.__class__(proposal.header, (), proposal.round, proposal.pol_round,
                                           proposal.sig, proposal.pol),
                     leaf_list, now_ms=0) is None
    assert len(asm) == 2
    ready, fetches = asm.poll(FETCH_AFTER, 1)
    assert ready == [] and {f.peer for f in fetches} == {1, 2}
    assert asm.deliver([e.envelope_bytes for e in envs[:2]]) == 2
    ready, _ = asm.poll(FETCH_AFTER + 1, 1)
    assert sorted(encode_message(m) for m in ready) == sorted(
        [message, encode_message(proposal)])


def test_missing_envelopes_park_the_proposal_until_gossip_admits_them(block):
    message, _, envs = block
    known = {e.leaf_hash: e for e in envs[:3]}
    asm = assembler(known)
    parsed, leaves = decode_compact(*compact_proposal(message))
    assert asm.offer(1, parsed, leaves, now_ms=1000) is None
    assert len(asm) == 1 and asm.next_due_ms() == 1000 + FETCH_AFTER
    assert asm.poll(1100, height=1) == ([], [])          # nothing new, no fetch yet
    known.update({e.leaf_hash: e for e in envs[3:]})     # gossip caught up
    asm.admitted([b"\x00" * 32] + [e.leaf_hash for e in envs[3:]])
    ready, fetches = asm.poll(1150, height=1)
    assert fetches == [] and len(asm) == 0
    assert [encode_message(p) for p in ready] == [message]
    assert (asm.stats.parked, asm.stats.completed, asm.stats.fetches) == (1, 1, 0)


def test_envelopes_that_never_arrive_are_fetched_from_the_sender(block):
    message, _, envs = block
    asm = assembler({e.leaf_hash: e for e in envs[:2]})
    parsed, leaves = decode_compact(*compact_proposal(message))
    assert asm.offer(3, parsed, leaves, now_ms=0) is None
    ready, fetches = asm.poll(FETCH_AFTER, height=1)
    missing = tuple(sorted(e.leaf_hash for e in envs[2:]))
    assert ready == [] and fetches == [Fetch(3, missing)]
    # Not asked again before the refetch interval, then asked again.
    assert asm.poll(FETCH_AFTER + REFETCH - 1, height=1) == ([], [])
    assert asm.poll(FETCH_AFTER + REFETCH, height=1)[1] == [Fetch(3, missing)]

    stranger = make_envelope(make_genesis()[2], "other-chain", 99)
    used = asm.deliver([stranger.envelope_bytes, "not bytes"] +  # type: ignore[list-item]
                       [e.envelope_bytes for e in envs[2:]])
    assert used == len(envs) - 2
    ready, _ = asm.poll(FETCH_AFTER + REFETCH + 1, height=1)
    assert [encode_message(p) for p in ready] == [message]
    assert asm.stats.fetched == len(envs) - 2


def test_stale_and_excess_proposals_are_dropped(block):
    message, _, _ = block
    asm = assembler({})
    parsed, leaves = decode_compact(*compact_proposal(message))
    asm.offer(1, parsed, leaves, now_ms=0)
    assert asm.offer(1, parsed, leaves, now_ms=5) is None  # the same proposal again
    assert len(asm) == 1
    assert asm.poll(10, height=2) == ([], [])  # the chain moved past height 1
    assert len(asm) == 0 and asm.stats.dropped == 1

    for r in range(MAX_PARKED + 3):
        asm.offer(1, Proposal(parsed.header, (), r, -1, parsed.sig), leaves, now_ms=20)
    assert len(asm) == MAX_PARKED


def test_compact_decoding_rejects_malformed_leaves_and_envelopes(block):
    message, _, _ = block
    bare, leaves = compact_proposal(message)
    with pytest.raises(BadEncoding):
        split_leaves(leaves[:-1])
    with pytest.raises(BadEncoding):
        split_leaves("text")  # type: ignore[arg-type]
    with pytest.raises(BadEncoding):
        decode_compact(message, leaves)  # envelopes must not travel too
    value = decode(bare)
    value["round"] = "x"
    with pytest.raises(DecodeError):
        decode_compact(canonical(value), leaves)


def test_no_fetch_while_admission_is_still_busy_with_peers_records(block):
    message, _, envs = block
    asm = assembler({})
    parsed, leaves = decode_compact(*compact_proposal(message))
    asm.offer(1, parsed, leaves, now_ms=0)
    assert asm.poll(FETCH_AFTER, height=1, admission_busy=True) == ([], [])
    # ... and says so, or its caller would wake at once and spin until then
    assert asm.next_due_ms(admission_busy=True) == MAX_BUSY_WAIT_MS
    assert asm.next_due_ms() == FETCH_AFTER
    assert asm.poll(FETCH_AFTER + 1, height=1)[1] != []  # idle: fetch now
    asm = assembler({})
    asm.offer(1, parsed, leaves, now_ms=0)
    assert asm.poll(MAX_BUSY_WAIT_MS, height=1, admission_busy=True)[1] != []  # waited enough


def test_one_admission_fills_every_proposal_waiting_for_it(block):
    message, _, envs = block
    known: dict[bytes, Envelope] = {}
    asm = assembler(known)
    parsed, leaves = decode_compact(*compact_proposal(message))
    again = Proposal(parsed.header, (), 1, -1, parsed.sig)  # same block, next round
    asm.offer(1, parsed, leaves, now_ms=0)
    asm.offer(2, again, leaves, now_ms=0)
    known.update({e.leaf_hash: e for e in envs})
    asm.admitted(e.leaf_hash for e in envs)
    assert asm.next_due_ms() == 0
    ready, fetches = asm.poll(1, height=1)
    assert fetches == [] and [p.round for p in ready] == [0, 1]
    assert len(asm) == 0 and not asm._wanted  # the index empties with the parking lot
