"""State sync under governance: a node that joined by snapshot rebuilds the
membership from the governance records back-fill writes, and then answers
``GET /v1/membership`` and version 2 bundles as a node that replayed every
block (ledger/statesync.py, node/statesync.py); and ``ledger fsck`` of a
store whose history is still being back-filled (ledger/fsck.py)."""

from __future__ import annotations

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


def set_change_chain() -> tuple[Any, ChainStore, list[SigningKey]]:
    """4 validators; a fifth added at block 2 (in force 4..6, where blocks are
    certified with the fifth's vote), removed at block 5 (back to the genesis
    set from 7); blocks up to 8."""
    genesis, validators, members, submitter = gov_genesis()
    fifth = make_keys(1, EXTRA_SEED_BASE + 88)[0]
    keys = {k.public_key: k for k in [*validators, fifth]}
    src = ChainStore(MemoryStore(), genesis)
    commit_in_epoch(src, [make_envelope(submitter, "test", 0)], keys)                # 1
    commit_in_epoch(src, [gov_record("test", members[:2], 1, "gov.validator.add",
                                     {"name": "v4", "pubkey": fifth.public_key,
                                      "address": "127.0.0.1:1"})], keys)              # 2
    commit_in_epoch(src, [make_envelope(submitter, "test", 1)], keys)                # 3
    assert src.epoch_genesis(4).n == 5
    commit_in_epoch(src, [make_envelope(submitter, "test", 2)], keys, [1, 2, 3, 4])  # 4
    commit_in_epoch(src, [gov_record("test", members[:2], 2, "gov.validator.remove",
                                     {"pubkey": fifth.public_key})], keys, [1, 2, 3, 4])  # 5
    commit_in_epoch(src, [make_envelope(submitter, "test", 3)], keys, [1, 2, 3, 4])  # 6
    assert src.epoch_genesis(7).validators_hash == genesis.validators_hash
    commit_in_epoch(src, [make_envelope(submitter, "test", 4)], keys)                # 7
    commit_in_epoch(src, [make_envelope(submitter, "test", 5)], keys)                # 8
    return genesis, src, validators


def test_a_snapshot_naming_a_changed_validator_set_is_refused_as_such() -> None:
    genesis, src, _ = set_change_chain()
    store = MemoryStore()
    at_five = Snapshot(src.header(5).header_bytes,  # type: ignore[union-attr]
                       src.certificate(5).to_bytes(), 0, ())  # type: ignore[union-attr]
    with pytest.raises(ValidatorSetChanged, match="another validator set than genesis"):
        verify_snapshot(at_five, genesis)
    with pytest.raises(ValidatorSetChanged):
        install_snapshot(store, at_five, genesis)
    assert next(iter(store.iterate(b"")), None) is None


@pytest.mark.parametrize("batch", [8, 1])
def test_backfill_checks_each_block_against_the_set_in_force_at_its_height(batch: int) -> None:
    """The snapshot's header names the genesis set again, but blocks 4..6
    below it were certified by a set of five (the fifth's vote among them):
    back-fill walks the sets from genesis and accepts them, and refuses a
    block certified by the wrong set."""
    genesis, src, validators = set_change_chain()
    store = MemoryStore()
    install_snapshot(store, take_snapshot(src), genesis)
    chain = ChainStore(store, genesis)
    fill = Backfill(store, chain)
    blocks = fetched(src, 1, 8)
    # Block 4 re-certified by the genesis set: not the set in force at 4.
    header4 = blocks[3][0]
    forged = (header4, blocks[3][1], certify(header4, validators, genesis))
    assert fill.apply(blocks[:3]) == 3
    with pytest.raises(SnapshotError, match="block 4 names another validator set|certificate"):
        fill.apply([forged, *blocks[4:]])
    for start in range(3, 8, batch):
        fill.apply(blocks[start:start + batch])
        if start == 3 and batch == 1:  # a restart mid-way walks the sets from the store
            fill = Backfill(store, ChainStore(store, genesis))
    assert fill.done
    assert list(store.iterate(b"")) == list(src._store.iterate(b""))
