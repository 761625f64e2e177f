"""ChainStore: committing certified blocks, every index, rejections, crash
atomicity and corruption detection."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    World,
    built,
    snapshot,
    three_blocks,
    as_genesis,
    block_time,
    certify,
    commit_envelopes,
    make_envelope,
    make_genesis,
    make_keys,
)

from ledger import merkle, schema
from ledger.blocks import ZERO_HASH, Certificate, Header
from ledger.chain import ChainStore
from ledger.errors import (
    CertificateError,
    HeaderError,
    NotFound,
    QuorumNotReached,
    SchemaUnsupported,
    StorageCorruption,
    ValidatorSetMismatch,
    VerificationError,
    WrongChain,
)
from ledger.storage import LevelDBStore, MemoryStore, WriteBatch


# ------------------------------------------------------------------ basics


def test_empty_chain(world: World) -> None:
    chain = ChainStore(MemoryStore(), world.genesis)
    assert chain.height == 0 and chain.tip() is None
    assert chain.log.size == 0
    assert chain.header(1) is None and chain.header(0) is None
    assert chain.header_bytes(1) is None and chain.certificate(1) is None
    assert chain.record_location(b"\x00" * 32) is None
    assert chain.envelope(b"\x00" * 32) is None
    with pytest.raises(NotFound):
        chain.block_record_ids(1)
    with pytest.raises(NotFound):
        chain.envelope_at(0)


def test_a_bundle_is_not_built_from_an_envelope_that_misses_its_leaf(world: World) -> None:
    """A stored envelope that does not hash to its leaf is corruption, named,
    and no proof bundle is built from it."""
    from ledger.proofs import build_bundle

    store = MemoryStore()
    chain = ChainStore(store, world.genesis)
    b1, b2, b3 = three_blocks(chain, world)
    everything = b1 + b2 + b3
    assert build_bundle(chain, everything[4].id)["leaf_index"] == 4
    batch = WriteBatch()
    batch.put(schema.envelope_key(4), everything[5].envelope_bytes)  # another record's bytes
    store.write(batch)
    with pytest.raises(StorageCorruption, match="does not match its leaf hash"):
        chain.envelope_at(4)
    with pytest.raises(StorageCorruption, match="does not match its leaf hash"):
        build_bundle(chain, everything[4].id)


def test_next_header_builds_on_the_tip(world: World) -> None:
    chain = ChainStore(MemoryStore(), world.genesis)
    envs = world.envelopes(0, 5)
    h1 = chain.next_header(envs, time=123, proposer=2)
    leaves = [e.leaf_hash for e in envs]
    assert (h1.chain, h1.height, h1.prev, h1.time, h1.proposer) == ("test", 1, ZERO_HASH, 123, 2)
    assert (h1.tx_count, h1.tx_root) == (5, merkle.root(leaves))
    assert (h1.log_size, h1.log_root) == (5, merkle.root(leaves))
    assert h1.validators == world.genesis.validators_hash
    assert chain.height == 0 and chain.log.size == 0  # building writes nothing
    chain.commit_block(h1, envs, certify(h1, world.validators, world.genesis))
    more = world.envelopes(5, 2)
    h2 = chain.next_header(more, time=124, proposer=3)
    assert (h2.height, h2.prev) == (2, h1.hash)
    assert h2.tx_root == merkle.root([e.leaf_hash for e in more])
    assert h2.log_root == merkle.root(leaves + [e.leaf_hash for e in more])


def test_commit_and_every_index(world: World) -> None:
    chain = ChainStore(MemoryStore(), world.genesis)
    b1, b2, b3 = three_blocks(chain, world)
    everything = b1 + b2 + b3
    assert chain.height == 3 and chain.log.size == 8
    tip = chain.tip()
    assert tip is not None and tip.height == 3
    assert chain.log.root() == tip.log_root == merkle.root([e.leaf_hash for e in everything])
    for height, block in enumerate((b1, b2, b3), start=1):
        header = chain.header(height)
        cert = chain.certificate(height)
        assert header is not None and cert is not None
        assert chain.header_bytes(height) == header.header_bytes
        assert cert.block == header.hash and cert.height == height
        assert chain.block_record_ids(height) == [e.id for e in block]
        assert chain.block_envelopes(height) == [e.envelope_bytes for e in block]
    assert chain.header(4) is None
    for leaf_index, env in enumerate(everything):
        height = 1 if leaf_index < 3 else 2 if leaf_index < 4 else 3
        assert chain.record_location(env.id) == (height, leaf_index)
        assert chain.envelope_at(leaf_index) == env.envelope_bytes
        assert chain.envelope(env.id) == env.envelope_bytes
        assert chain.id_for_nonce(world.submitter.public_key, env.record.nonce) == env.id
    assert chain.id_for_nonce(world.submitter.public_key, 999) is None
    assert sorted(chain.children(b1[0].id)) == sorted([b2[0].id, b3[3].id])
    assert chain.children(b1[2].id) == [b2[0].id]
    assert chain.children(b1[1].id) == []


def test_a_location_past_the_tip_is_corruption(world: World) -> None:
    store = MemoryStore()
    chain = ChainStore(store, world.genesis)
    envs = world.envelopes(1, 1)
    batch = WriteBatch()
    batch.put(schema.record_location_key(envs[0].id), schema.pack_location(1, 0))
    store.write(batch)
    with pytest.raises(StorageCorruption, match="past the tip"):
        chain.record_location(envs[0].id)


def test_records_by_submitter_pages_in_log_order(world: World) -> None:
    chain = ChainStore(MemoryStore(), world.genesis)
    b1, b2, b3 = three_blocks(chain, world)
    other = make_keys(1, 555)[0]
    pk = world.submitter.public_key
    expected = [(i, e.id) for i, e in enumerate(b1 + b2 + b3)]
    assert chain.records_by_submitter(pk) == expected
    assert chain.records_by_submitter(pk, limit=3) == expected[:3]
    assert chain.records_by_submitter(pk, limit=3, after_index=2) == expected[3:6]
    assert chain.records_by_submitter(pk, after_index=7) == []
    assert chain.records_by_submitter(pk, limit=0) == []
    assert chain.records_by_submitter(other.public_key) == []


def test_reopen_from_leveldb(world: World, tmp_path: Path) -> None:
    path = str(tmp_path / "chain")
    chain = ChainStore(LevelDBStore(path), world.genesis)
    blocks = three_blocks(chain, world)
    tip = chain.tip()
    chain.close()
    again = ChainStore(LevelDBStore(path), world.genesis)
    try:
        assert again.height == 3 and again.tip() == tip
        assert again.block_record_ids(2) == [e.id for e in blocks[1]]
        commit_envelopes(again, world.envelopes(40, 2), world.validators)
        assert again.height == 4 and again.log.size == 10
    finally:
        again.close()


def test_empty_block(world: World) -> None:
    chain = ChainStore(MemoryStore(), world.genesis)
    commit_envelopes(chain, [], world.validators)
    assert chain.height == 1 and chain.log.size == 0
    assert chain.block_record_ids(1) == []
    ChainStore(chain._store, world.genesis)  # reopens cleanly


def test_repeated_record_keeps_its_first_location(world: World) -> None:
    # Admission refuses repeats; if a certified block carried one anyway the
    # log must still take it, and the indexes keep the first occurrence.
    chain = ChainStore(MemoryStore(), world.genesis)
    env = world.envelopes(0, 1)[0]
    commit_envelopes(chain, [env], world.validators)
    commit_envelopes(chain, [env, env], world.validators)
    assert chain.log.size == 3
    assert chain.record_location(env.id) == (1, 0)
    assert chain.block_record_ids(2) == [env.id, env.id]


def test_validated_commit_writes_what_a_guarded_commit_writes(world: World) -> None:
    """The driver's commit (validated=True: validation already found no id
    or nonce committed) skips the index guard reads, not any index entry;
    repeats within one block still keep their first occurrence."""
    guarded, trusted = (ChainStore(MemoryStore(), world.genesis) for _ in range(2))
    envs = world.envelopes(0, 6)
    child = make_envelope(world.submitter, world.genesis.chain, 99, parents=[envs[0].id])
    for envelopes in (envs[:3], [*envs[3:], child]):
        for chain, validated in ((guarded, False), (trusted, True)):
            height = chain.height + 1
            header = chain.next_header(envelopes, time=block_time(height),
                                       proposer=(height - 1) % chain.genesis.n)
            chain.commit_block(header, envelopes, certify(header, world.validators, world.genesis),
                               validated=validated)
    assert snapshot(trusted._store) == snapshot(guarded._store)
    dup = world.envelopes(10, 1)[0]
    header = trusted.next_header([dup, dup], time=block_time(3), proposer=2)
    trusted.commit_block(header, [dup, dup], certify(header, world.validators, world.genesis),
                         validated=True)
    assert trusted.record_location(dup.id) == (3, 7)


# -------------------------------------------------------------- rejections


def _replace(header: Header, **changes: Any) -> Header:
    return dataclasses.replace(header, header_bytes=b"", **changes)


REJECTIONS: dict[str, tuple[dict[str, Any], type[VerificationError]]] = {
    "height": ({"height": 3}, HeaderError),
    "prev": ({"prev": b"\x11" * 32}, HeaderError),
    "tx_count": ({"tx_count": 2}, HeaderError),
    "tx_root": ({"tx_root": b"\x22" * 32}, HeaderError),
    "log_size": ({"log_size": 7}, HeaderError),
    "log_root": ({"log_root": b"\x33" * 32}, HeaderError),
    "validators": ({"validators": b"\x44" * 32}, ValidatorSetMismatch),
    "chain": ({"chain": "other"}, WrongChain),
    "proposer": ({"proposer": 4}, HeaderError),
}


@pytest.mark.parametrize("field", sorted(REJECTIONS))
def test_bad_header_is_rejected_and_nothing_written(world: World, field: str) -> None:
    store = MemoryStore()
    chain = ChainStore(store, world.genesis)
    commit_envelopes(chain, world.envelopes(0, 3), world.validators)
    before = snapshot(store)
    envs = world.envelopes(3, 3)
    good = chain.next_header(envs, time=block_time(2), proposer=1)
    changes, error = REJECTIONS[field]
    bad = _replace(good, **changes)
    chain.check_block(good, envs)
    with pytest.raises(error):
        chain.check_block(bad, envs)
    with pytest.raises(error):
        chain.commit_block(bad, envs, certify(bad, world.validators, world.genesis))
    assert snapshot(store) == before
    assert chain.height == 1 and chain.log.size == 3
    chain.commit_block(good, envs, certify(good, world.validators, world.genesis))
    assert chain.height == 2


def test_envelopes_must_match_the_header(world: World) -> None:
    chain = ChainStore(MemoryStore(), world.genesis)
    envs = world.envelopes(0, 3)
    header = chain.next_header(envs, time=1, proposer=0)
    cert = certify(header, world.validators, world.genesis)
    with pytest.raises(HeaderError):
        chain.commit_block(header, envs[::-1], cert)
    with pytest.raises(HeaderError):
        chain.commit_block(header, world.envelopes(100, 3), cert)
    assert chain.height == 0


def test_certificate_rejections(world: World) -> None:
    store = MemoryStore()
    chain = ChainStore(store, world.genesis)
    envs = world.envelopes(0, 2)
    header = chain.next_header(envs, time=1, proposer=0)
    other = _replace(header, time=2)
    good = certify(header, world.validators, world.genesis)
    sig0 = good.signatures[0]
    bad_sig = Certificate(1, 0, header.hash, ((sig0[0], bytes(64)),) + good.signatures[1:])
    cases: list[tuple[Certificate, type[Exception]]] = [
        (certify(header, world.validators, world.genesis, signers=[0, 1]), QuorumNotReached),
        (certify(other, world.validators, world.genesis), CertificateError),
        (bad_sig, CertificateError),
        (dataclasses.replace(good, height=2), CertificateError),
        (Certificate(1, 0, header.hash, good.signatures + (good.signatures[0],)),
         CertificateError),
    ]
    for cert, error in cases:
        with pytest.raises(error):
            chain.commit_block(header, envs, cert)
        assert chain.height == 0 and snapshot(store)[-1][0] == schema.META_SCHEMA_VERSION
    chain.commit_block(header, envs, certify(header, world.validators, world.genesis,
                                             signers=[1, 2, 3]))
    assert chain.height == 1


def test_verify_certificate_false_trusts_the_caller(world: World) -> None:
    chain = ChainStore(MemoryStore(), world.genesis)
    envs = world.envelopes(0, 1)
    header = chain.next_header(envs, time=1, proposer=0)
    unsigned = Certificate(1, 0, header.hash, ())
    chain.commit_block(header, envs, unsigned, verify_certificate=False)
    assert chain.height == 1
    # ...and the unverifiable tip is caught when the store is opened again.
    with pytest.raises(StorageCorruption, match="certificate"):
        ChainStore(chain._store, world.genesis)


def test_opened_with_another_genesis(world: World) -> None:
    store, _ = built(world)
    doc, _, _ = make_genesis(4, "other-chain")
    with pytest.raises(StorageCorruption, match="chain"):
        ChainStore(store, as_genesis(doc))
    doc5, _, _ = make_genesis(5, "test")
    with pytest.raises(StorageCorruption, match="validator set"):
        ChainStore(store, as_genesis(doc5))


def test_schema_version(world: World) -> None:
    store = MemoryStore()
    ChainStore(store, world.genesis)
    assert store.get(schema.META_SCHEMA_VERSION) == schema.pack_u64(schema.SCHEMA_VERSION)
    batch = WriteBatch()
    batch.put(schema.META_SCHEMA_VERSION, schema.pack_u64(99))
    store.write(batch)
    with pytest.raises(SchemaUnsupported, match="schema version 99.*newer release"):
        ChainStore(store, world.genesis)
    assert store.get(schema.META_SCHEMA_VERSION) == schema.pack_u64(99)  # left as it was
    unversioned = MemoryStore()
    batch = WriteBatch()
    batch.put(b"zz", b"stray")
    unversioned.write(batch)
    with pytest.raises(StorageCorruption, match="no schema version"):
        ChainStore(unversioned, world.genesis)


# ------------------------------------------------ consensus state, evidence


def test_consensus_state_and_evidence_persist(world: World, tmp_path: Path) -> None:
    path = str(tmp_path / "chain")
    chain = ChainStore(LevelDBStore(path), world.genesis)
    assert chain.get_consensus_state() is None and chain.evidence() == []
    chain.put_consensus_state(b"state-1")
    chain.put_consensus_state(b"state-2")
    chain.add_evidence(b"h5/v2", b"double-sign")
    chain.add_evidence(b"h1/v0", b"equivocation")
    chain.add_evidence(b"h5/v2", b"double-sign")  # idempotent
    chain.close()
    chain = ChainStore(LevelDBStore(path), world.genesis)
    try:
        assert chain.get_consensus_state() == b"state-2"
        assert chain.evidence() == [b"equivocation", b"double-sign"]
        assert chain.height == 0
    finally:
        chain.close()


def test_every_key_comes_from_schema(world: World) -> None:
    store, _ = built(world)
    prefixes = {schema.META, schema.TILE, schema.ENVELOPE, schema.RECORD_LOCATION,
                schema.NONCE, schema.CHILD, schema.SUBMITTER, schema.HEADER,
                schema.CERTIFICATE, schema.EVIDENCE}
    assert {key[:1] for key, _ in store.iterate(b"")} <= prefixes


@pytest.mark.parametrize("leveldb", [False, True])
def test_nonce_holders_answers_as_a_read_per_nonce(world: World, tmp_path: Path,
                                                   leveldb: bool) -> None:
    """The batched lookup (a range walk for close nonces, reads for scattered
    ones) finds exactly the committed holders, whatever the mix asked."""
    store = LevelDBStore(str(tmp_path / "db")) if leveldb else MemoryStore()
    chain = ChainStore(store, world.genesis)
    nonces = [*range(10), 20, 22, 40, 1000, 1003]
    envelopes = [make_envelope(world.submitter, world.genesis.chain, n) for n in nonces]
    commit_envelopes(chain, envelopes[:8], world.validators)
    commit_envelopes(chain, envelopes[8:], world.validators)
    sub, other = world.submitter.public_key, b"\x07" * 32
    asks = [
        [(sub, n) for n in range(12)],                      # a dense range, past the end
        [(sub, n) for n in (3, 4, 5, 6, 21, 22)],           # close, with a gap
        [(sub, n) for n in (0, 40, 1003, 5000, 10**12)],     # scattered: reads
        [(sub, n) for n in (999, 1000, 1001, 1002, 1003)],  # a walk from a missing nonce
        [(sub, n) for n in (1004, 1005, 1006, 1007)],       # past every committed nonce
        [(other, n) for n in range(6)] + [(sub, 9)],        # a submitter with nothing
        [],
    ]
    for ask in asks:
        expected = {key: chain.id_for_nonce(*key) for key in ask}
        assert chain.nonce_holders(ask) == {k: v for k, v in expected.items() if v is not None}
    assert chain.nonce_holders([(sub, 5)]) == {(sub, 5): envelopes[5].id}
