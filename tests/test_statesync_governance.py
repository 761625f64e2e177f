"""State sync under governance: a node that joined by snapshot rebuilds the
membership from the governance records back-fill writes, and then answers
``GET /v1/membership`` and version 2 bundles as a node that replayed every
block (ledger/statesync.py, node/statesync.py); and ``ledger fsck`` of a
store whose history is still being back-filled (ledger/fsck.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from govhelpers import EXTRA_SEED_BASE, gov_genesis, gov_record
from helpers import World, block_time, certify, commit_envelopes, make_envelope, make_keys
from test_statesync import fetched, source_chain, take_snapshot

from ledger import schema
from ledger.chain import ChainStore
from ledger.fsck import fsck
from ledger.fsck_report import ENVELOPES, MISSING
from ledger.proofs import build_record_bundle
from ledger.crypto import SigningKey
from ledger.records import Envelope, decode_committed_envelope
from ledger.statesync import (
    Backfill,
    Snapshot,
    SnapshotError,
    ValidatorSetChanged,
    install_snapshot,
    verify_snapshot,
)
from ledger.storage import MemoryStore, WriteBatch
from ledger.verify_epochs import verify_bundle_v2


def test_snapshot_after_a_governance_change_then_backfill_restores_membership() -> None:
    genesis, validators, members, submitter = gov_genesis()
    new = make_keys(1, EXTRA_SEED_BASE + 77)[0]
    src_store = MemoryStore()
    src = ChainStore(src_store, genesis)
    commit_envelopes(src, [make_envelope(submitter, "test", 0)], validators)
    gov = gov_record("test", members[:2], 1, "gov.submitter.add",
                     {"name": "newco", "pubkey": new.public_key, "roles": ["submit"]})
    commit_envelopes(src, [gov, make_envelope(submitter, "test", 1)], validators)  # block 2
    fresh = make_envelope(new, "test", 1)
    commit_envelopes(src, [fresh], validators)                                      # block 3
    for n in range(2, 6):
        commit_envelopes(src, [make_envelope(submitter, "test", n)], validators)
    assert src.height == 7

    store = MemoryStore()
    install_snapshot(store, take_snapshot(src), genesis)
    chain = ChainStore(store, genesis)
    assert chain.history_gap == range(1, 8)
    assert not chain.membership.changes  # the governance below the snapshot is not known yet

    # A block above the snapshot, by the submitter governance added: the
    # block applies (it is certified) on both nodes.
    later = make_envelope(new, "test", 2)
    commit_envelopes(src, [later], validators)
    commit_envelopes(chain, [later], validators)

    fill = Backfill(store, chain)
    assert fill.apply(fetched(src, 1, 4)) == 4
    assert fill.governance_found == 1
    chain.reload_membership()
    assert fill.apply(fetched(src, 5, 7)) == 3 and fill.done
    assert fill.governance_found == 1
    assert not chain.membership.changes  # the gap was open: nothing below it counted
    chain.reload_membership()  # as the node does when back-fill ends

    tip = chain.height + 1
    for height in (1, 2, 3, tip):
        assert chain.membership.at(height).to_json() == src.membership.at(height).to_json()
    for record in (fresh, later):
        mine = build_record_bundle(chain, chain.membership, record.id)
        assert mine == build_record_bundle(src, src.membership, record.id)
        assert mine["format"] == "auditledger-proof/2"
        verify_bundle_v2(mine, genesis.raw)
    # The store holds what the replaying node holds, the `g` index included,
    # and a reopened store derives the same membership from it.
    assert list(store.iterate(schema.GOVERNANCE)) == list(src_store.iterate(schema.GOVERNANCE))
    assert list(store.iterate(b"")) == list(src_store.iterate(b""))
    reopened = ChainStore(store, genesis)
    assert reopened.membership.at(tip).to_json() == src.membership.at(tip).to_json()


def test_fsck_of_a_store_still_back_filling(world: World) -> None:
    """fsck knows the gap: nothing of it is missing, what was back-filled and
    what came after the snapshot is checked, and damage there is found."""
    _, src, ids = source_chain(world)
    store = MemoryStore()
    install_snapshot(store, take_snapshot(src), world.genesis)
    chain = ChainStore(store, world.genesis)
    new = world.envelopes(10_000, 5)
    commit_envelopes(chain, new, world.validators)
    commit_envelopes(src, new, world.validators)
    assert fsck(store, world.genesis).clean
    Backfill(store, chain).apply(fetched(src, 1, 20))
    report = fsck(store, world.genesis)
    assert report.clean and report.height == chain.height
    store.write(_deleting(schema.envelope_key(3)))  # a back-filled record
    damaged = fsck(store, world.genesis)
    assert (ENVELOPES, MISSING) in damaged.ranges
    assert damaged.ranges[(ENVELOPES, MISSING)].first == schema.envelope_key(3)


def _deleting(key: bytes) -> WriteBatch:
    batch = WriteBatch()
    batch.delete(key)
    return batch


# -- validator-set changes below a snapshot --------------------------------------


def commit_in_epoch(chain: ChainStore, envs: list, keys: dict[bytes, Any],  # type: ignore[type-arg]
                    signers: list[int] | None = None) -> None:
    """Commit a block certified by the validator set in force at its height
    (``signers``: indexes in that set; default its first quorum)."""
    height = chain.height + 1
    epoch = chain.epoch_genesis(height)
    header = chain.next_header(envs, time=block_time(height), proposer=(height - 1) % epoch.n)
    cert = certify(header, [keys[v.pubkey] for v in epoch.validators], epoch, signers=signers)
    chain.commit_block(header, envs, cert)


FIFTH = make_keys(1, EXTRA_SEED_BASE + 88)[0]


def set_change_chain(upto: int = 8) -> tuple[Any, ChainStore, list[SigningKey]]:
    """4 validators; a fifth added at block 2 (in force 4..6, where blocks are
    certified with the fifth's vote), removed at block 5 (back to the genesis
    set from 7); blocks up to ``upto`` (at most 8)."""
    genesis, validators, members, submitter = gov_genesis()
    keys = {k.public_key: k for k in [*validators, FIFTH]}
    with_fifth = [1, 2, 3, 4]
    add = gov_record("test", members[:2], 1, "gov.validator.add",
                     {"name": "v4", "pubkey": FIFTH.public_key, "address": "127.0.0.1:1"})
    remove = gov_record("test", members[:2], 2, "gov.validator.remove",
                        {"pubkey": FIFTH.public_key})
    plan: list[tuple[list[Envelope], list[int] | None]] = [
        ([make_envelope(submitter, "test", 0)], None),                # 1
        ([add], None),                                                # 2
        ([make_envelope(submitter, "test", 1)], None),                # 3
        ([make_envelope(submitter, "test", 2)], with_fifth),          # 4: five validators
        ([remove], with_fifth),                                       # 5
        ([make_envelope(submitter, "test", 3)], with_fifth),          # 6
        ([make_envelope(submitter, "test", 4)], None),                # 7: genesis set again
        ([make_envelope(submitter, "test", 5)], None),                # 8
    ]
    src = ChainStore(MemoryStore(), genesis)
    for envs, signers in plan[:upto]:
        commit_in_epoch(src, envs, keys, signers)
    assert upto < 4 or src.epoch_genesis(4).n == 5
    assert upto < 7 or src.epoch_genesis(7).validators_hash == genesis.validators_hash
    return genesis, src, validators


def served_snapshot(src: ChainStore) -> Snapshot:
    """The snapshot ``src`` serves (GET /v1/sync/snapshot), as a joiner parses it."""
    from node.statesync import parse_snapshot, snapshot_response

    body = snapshot_response(src).body
    assert isinstance(body, bytes)
    return parse_snapshot(body)


def test_a_changed_set_without_governance_records_is_refused_as_such() -> None:
    """A peer of an earlier version sends no governance: the set its header
    names cannot be checked (the node then joins by blocks)."""
    genesis, src, _ = set_change_chain(5)
    store = MemoryStore()
    bare = dataclasses.replace(served_snapshot(src), governance=())
    with pytest.raises(ValidatorSetChanged, match="another validator set than genesis"):
        verify_snapshot(bare, genesis)
    with pytest.raises(ValidatorSetChanged):
        install_snapshot(store, bare, genesis)
    assert next(iter(store.iterate(b"")), None) is None


def test_a_snapshot_of_a_changed_set_is_checked_with_the_governance_it_carries() -> None:
    """The tip names the set of five: the snapshot's governance walk from
    genesis reaches it, the certificate is checked against it, and the node
    then follows, back-fills and ends as the source."""
    genesis, src, validators = set_change_chain(5)
    snap = served_snapshot(src)
    # The addition (block 2) and the removal (block 5 itself, in force from
    # 7): the snapshot's walk knows the set of the blocks after it too.
    assert [e["height"] for e in snap.governance] == [2, 5]
    header, _ = verify_snapshot(snap, genesis)
    assert header.height == 5
    store = MemoryStore()
    install_snapshot(store, snap, genesis)
    chain = ChainStore(store, genesis)
    assert chain.history_gap == range(1, 6)
    for h in (5, 6, 7):
        assert chain.membership.at(h).to_json() == src.membership.at(h).to_json()
    # Blocks above the snapshot, certified by the five, then by the four again.
    keys = {k.public_key: k for k in [*validators, FIFTH]}
    for n, signers in ((3, [1, 2, 3, 4]), (4, None)):
        commit_in_epoch(src, [make_envelope(make_keys(1, 1_000_000)[0], "test", 10 + n)], keys,
                        signers)
        header, cert = src.header(src.height), src.certificate(src.height)
        assert header is not None and cert is not None
        chain.commit_block(header, [decode_committed_envelope(e)
                                    for e in src.block_envelopes(src.height)], cert)
    from ledger.errors import Unavailable
    from node.statesync import snapshot_response
    with pytest.raises(Unavailable, match="serves no snapshot"):
        snapshot_response(chain)  # governance it has not verified block by block
    reopened = ChainStore(store, genesis)  # a restart during back-fill
    assert reopened.membership.at(8).to_json() == src.membership.at(8).to_json()
    fill = Backfill(store, reopened)
    assert fill.apply(fetched(src, 1, 5)) == 5 and fill.done
    assert store.get(schema.META_SNAPSHOT_GOVERNANCE) is None
    reopened.reload_membership()
    assert reopened.membership.at(8).to_json() == src.membership.at(8).to_json()
    assert list(store.iterate(b"")) == list(src._store.iterate(b""))


def test_snapshot_governance_that_does_not_reach_the_header_set_is_refused() -> None:
    genesis, src, _ = set_change_chain(8)
    snap = served_snapshot(src)
    assert len(snap.governance) == 2
    verify_snapshot(snap, genesis)  # the set came back to genesis's
    # The removal left out: the walk ends at five, the header names four.
    with pytest.raises(SnapshotError, match="do not lead to the validator set"):
        verify_snapshot(dataclasses.replace(snap, governance=snap.governance[:1]), genesis)
    # An entry tampered with: its proof fails, naming the walk's step.
    bad = dict(snap.governance[0])
    bad["inclusion"] = ["00" * 32, *bad["inclusion"]]
    with pytest.raises(SnapshotError, match="snapshot governance"):
        verify_snapshot(dataclasses.replace(snap, governance=(bad, snap.governance[1])), genesis)
    # A snapshot of block 3 cannot carry a record of a later block.
    _, short, _ = set_change_chain(3)
    early = served_snapshot(short)
    assert len(early.governance) == 1
    with pytest.raises(SnapshotError, match="above the snapshot's height"):
        verify_snapshot(dataclasses.replace(early, governance=snap.governance), genesis)
