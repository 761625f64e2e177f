"""State sync under governance: a node that joined by snapshot rebuilds the
membership from the governance records back-fill writes, and then answers
``GET /v1/membership`` and version 2 bundles as a node that replayed every
block (ledger/statesync.py, node/statesync.py); and ``ledger fsck`` of a
store whose history is still being back-filled (ledger/fsck.py)."""

from __future__ import annotations

from govhelpers import EXTRA_SEED_BASE, gov_genesis, gov_record
from helpers import World, commit_envelopes, make_envelope, make_keys
from test_statesync import fetched, source_chain, take_snapshot

from ledger import schema
from ledger.chain import ChainStore
from ledger.fsck import fsck
from ledger.fsck_report import ENVELOPES, MISSING
from ledger.proofs import build_record_bundle
from ledger.statesync import Backfill, install_snapshot
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
