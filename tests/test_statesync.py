"""State sync in the store: snapshot checks, install, back-fill (ledger/statesync.py)."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import World, certify, commit_envelopes, make_envelope

from ledger import schema
from ledger.chain import ChainStore
from ledger.errors import VerificationError
from ledger.proofs import build_bundle
from ledger.statesync import Backfill, Snapshot, SnapshotError, install_snapshot, verify_snapshot
from ledger.storage import MemoryStore
from ledger.verify import verify_bundle

PER_BLOCK = 7
# 330 leaves: a full stratum-0 tile, a partial one and a partial stratum-1
# tile, so the frontier has peaks in two strata.
BLOCKS = 47


def source_chain(world: World) -> tuple[MemoryStore, ChainStore, list[list[bytes]]]:
    store = MemoryStore()
    chain = ChainStore(store, world.genesis)
    ids: list[list[bytes]] = []
    for b in range(BLOCKS):
        envs = world.envelopes(b * PER_BLOCK, PER_BLOCK)
        commit_envelopes(chain, envs, world.validators)
        ids.append([e.id for e in envs])
    return store, chain, ids


def take_snapshot(chain: ChainStore) -> Snapshot:
    tip = chain.tip()
    assert tip is not None
    cert = chain.certificate(tip.height)
    assert cert is not None
    size, tails = chain.log.frontier()
    return Snapshot(tip.header_bytes, cert.to_bytes(), size, tails)


def fetched(chain: ChainStore, first: int, last: int) -> list[tuple]:  # type: ignore[type-arg]
    from ledger.records import decode_committed_envelope
    out = []
    for h in range(first, last + 1):
        header, cert = chain.header(h), chain.certificate(h)
        out.append((header, [decode_committed_envelope(e) for e in chain.block_envelopes(h)],
                    cert))
    return out


def test_snapshot_install_serves_new_blocks_then_backfill_serves_all(world: World) -> None:
    src_store, src, ids = source_chain(world)
    snap = take_snapshot(src)
    assert len(snap.tails) == 2 and all(snap.tails)
    store = MemoryStore()
    install_snapshot(store, snap, world.genesis)
    chain = ChainStore(store, world.genesis)  # opens: integrity check passes on the gap
    assert chain.height == BLOCKS and chain.history_gap == range(1, BLOCKS + 1)
    assert chain.log.root() == src.log.root()
    # Blocks above the snapshot apply as usual; their proofs verify at once.
    new = world.envelopes(10_000, 5)
    h1, _ = commit_envelopes(chain, new, world.validators)
    h2, _ = commit_envelopes(src, new, world.validators)
    assert h1.header_bytes == h2.header_bytes
    verify_bundle(build_bundle(chain, new[3].id), world.genesis)
    # Old records are not known yet: the node must say "not back-filled".
    assert chain.record_location(ids[0][0]) is None
    assert chain.id_for_nonce(world.submitter.public_key, 0) is None
    assert chain.header(3) is None
    # Back-fill in two batches; a reopened store resumes where it stopped.
    fill = Backfill(store, chain)
    assert fill.apply(fetched(src, 1, 20)) == 20
    assert chain.history_gap == range(21, BLOCKS + 1)
    chain = ChainStore(store, world.genesis)
    fill = Backfill(store, chain)
    assert fill.next_height == 21
    assert fill.apply(fetched(src, 21, BLOCKS)) == BLOCKS - 20
    assert fill.done and not chain.history_gap
    # Every old record is provable, its nonce known, and the store holds
    # exactly what a node that replayed every block holds.
    verify_bundle(build_bundle(chain, ids[0][0]), world.genesis)
    verify_bundle(build_bundle(chain, ids[BLOCKS - 1][6]), world.genesis)
    assert chain.id_for_nonce(world.submitter.public_key, 0) == ids[0][0]
    assert list(store.iterate(b"")) == list(src_store.iterate(b""))
    ChainStore(store, world.genesis).check_integrity()


def test_tampered_frontier_is_refused(world: World) -> None:
    _, src, _ = source_chain(world)
    snap = take_snapshot(src)
    # A changed leaf under a small peak: the tile no longer hashes up.
    bad = bytearray(snap.tails[0])
    bad[5] ^= 1
    with pytest.raises(SnapshotError, match="not a Merkle tile"):
        verify_snapshot(dataclasses.replace(snap, tails=(bytes(bad), snap.tails[1])),
                        world.genesis)
    # A consistent tile of other leaves: the peaks do not fold to log_root.
    other_store = MemoryStore()
    other = ChainStore(other_store, world.genesis)
    for b in range(BLOCKS):
        commit_envelopes(other, world.envelopes(50_000 + b * PER_BLOCK, PER_BLOCK),
                         world.validators)
    forged = take_snapshot(other).tails
    with pytest.raises(SnapshotError, match="log_root"):
        verify_snapshot(dataclasses.replace(snap, tails=forged), world.genesis)
    with pytest.raises(SnapshotError, match="strata"):
        verify_snapshot(dataclasses.replace(snap, tails=snap.tails[:1]), world.genesis)
    with pytest.raises(SnapshotError, match="log size"):
        verify_snapshot(dataclasses.replace(snap, log_size=snap.log_size - 1), world.genesis)
    store = MemoryStore()
    with pytest.raises(SnapshotError):
        install_snapshot(store, dataclasses.replace(snap, tails=forged), world.genesis)
    assert list(store.iterate(b"")) == []


def test_bad_certificate_is_refused(world: World) -> None:
    _, src, _ = source_chain(world)
    snap = take_snapshot(src)
    tip = src.tip()
    assert tip is not None
    # Fewer than a quorum of signers.
    short = certify(tip, world.validators, world.genesis, signers=[0, 1])
    with pytest.raises(SnapshotError, match="certificate"):
        verify_snapshot(dataclasses.replace(snap, certificate_bytes=short.to_bytes()),
                        world.genesis)
    # A certificate of another block at the same height.
    other = dataclasses.replace(tip, time=tip.time + 1, header_bytes=b"")
    wrong = certify(other, world.validators, world.genesis)
    with pytest.raises(SnapshotError, match="certificate"):
        verify_snapshot(dataclasses.replace(snap, certificate_bytes=wrong.to_bytes()),
                        world.genesis)
    # A header with a made-up log root, certified by keys outside genesis.
    from helpers import make_keys
    fake = dataclasses.replace(tip, log_root=b"\x11" * 32, header_bytes=b"")
    outsiders = certify(fake, make_keys(4, seed_base=900), world.genesis)
    with pytest.raises(VerificationError):
        verify_snapshot(dataclasses.replace(snap, header_bytes=fake.header_bytes,
                                            certificate_bytes=outsiders.to_bytes()),
                        world.genesis)


def test_backfill_refuses_blocks_not_on_the_snapshot_chain(world: World) -> None:
    _, src, _ = source_chain(world)
    store = MemoryStore()
    install_snapshot(store, take_snapshot(src), world.genesis)
    chain = ChainStore(store, world.genesis)
    fill = Backfill(store, chain)
    blocks = fetched(src, 1, 3)
    # An envelope swapped for another signed record: tx_root differs.
    h, envs, cert = blocks[1]
    swapped = [make_envelope(world.submitter, world.genesis.chain, 99_999)] + envs[1:]
    with pytest.raises(VerificationError, match="tx_root"):
        fill.apply([blocks[0], (h, swapped, cert)])
    # A certified block 1 of another history: block 2's prev does not link.
    other = ChainStore(MemoryStore(), world.genesis)
    commit_envelopes(other, world.envelopes(70_000, 3), world.validators)
    with pytest.raises(SnapshotError, match="prev"):
        fill.apply(fetched(other, 1, 1) + blocks[1:])
    # Blocks come in order from the gap's lower end.
    with pytest.raises(SnapshotError, match="expected 1"):
        fill.apply(blocks[1:])
    assert chain.history_gap.start == 1 and fill.next_height == 1
    assert store.get(schema.META_BACKFILLED) is None
    assert fill.apply(blocks) == 3
