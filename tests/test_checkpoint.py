"""Checkpoints: a certified head extends another, or a fork is reported with both heads."""

from __future__ import annotations

import pytest

from helpers import build_certified_chain as _build_chain, certify
from ledger.blocks import ZERO_HASH, Header
from ledger.checkpoint import CertifiedHead, ForkDetected, check_extends, check_same_height
from ledger.errors import QuorumNotReached
from ledger.merkle import consistency_path, leaf_hash, root


def _heads():  # type: ignore[no-untyped-def]
    genesis, vkeys, _, chain = _build_chain(4, 3)
    heads = [CertifiedHead(h, c) for h, c, _ in chain]
    leaves = [e.leaf_hash for _, _, envs in chain for e in envs]
    return genesis, vkeys, heads, leaves


def test_later_head_extends_checkpoint() -> None:
    genesis, _, heads, leaves = _heads()
    old, new = heads[1], heads[3]
    path = consistency_path(old.header.log_size, leaves[: new.header.log_size])
    check_extends(genesis, old, new, path)
    check_extends(genesis, new, new, [])
    assert CertifiedHead.from_json(new.to_json()) == new


def test_rewritten_history_is_a_fork_with_both_heads_as_evidence() -> None:
    genesis, vkeys, heads, leaves = _heads()
    old = heads[1]
    # A colluding quorum certifies a different log of the same length at height 4.
    forged_leaves = [leaf_hash(b"forged")] + leaves[1:]
    h = heads[3].header
    forged = Header(chain=h.chain, height=h.height, prev=h.prev, time=h.time, proposer=h.proposer,
                    tx_count=h.tx_count, tx_root=h.tx_root, log_size=h.log_size,
                    log_root=root(forged_leaves), validators=h.validators)
    forged_head = CertifiedHead(forged, certify(forged, vkeys, genesis))
    path = consistency_path(old.header.log_size, forged_leaves)
    with pytest.raises(ForkDetected) as info:
        check_extends(genesis, old, forged_head, path)
    evidence = info.value.evidence()
    assert evidence["first"]["hash"] == old.header.hash.hex()
    assert evidence["second"]["hash"] == forged.hash.hex()
    with pytest.raises(ForkDetected):
        check_same_height(genesis, heads[3], forged_head)


def test_head_behind_checkpoint_and_uncertified_head_are_rejected() -> None:
    genesis, vkeys, heads, _ = _heads()
    with pytest.raises(ForkDetected):
        check_extends(genesis, heads[2], heads[1], [])
    h = heads[3].header
    weak = CertifiedHead(h, certify(h, vkeys, genesis, signers=[0]))
    with pytest.raises(QuorumNotReached):
        check_extends(genesis, heads[1], weak, [])
    assert ZERO_HASH == heads[0].header.prev
