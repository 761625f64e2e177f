"""ChainStore durability: a crash mid-commit leaves the whole block or none,
and damaged bytes are reported as StorageCorruption on read or on open."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest
from helpers import (
    World,
    built,
    snapshot,
    three_blocks,
    block_time,
    certify,
    commit_envelopes,
)

from ledger import schema
from ledger.chain import ChainStore
from ledger.errors import StorageCorruption
from ledger.storage import KeyValueStore, LevelDBStore, MemoryStore, WriteBatch
from ledger.tiles import node_location

TESTS_DIR = Path(__file__).resolve().parent



# ------------------------------------------------------------------ crashes


class FailingStore:
    """Delegates to ``inner`` but fails the next write: before it lands, or
    (``after=True``) after it landed, as an fsync error would."""

    def __init__(self, inner: KeyValueStore, after: bool = False) -> None:
        self.inner = inner
        self.after = after
        self.armed = False

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        if self.armed:
            self.armed = False
            if self.after:
                self.inner.write(batch, sync)
            raise OSError("simulated crash during the block write")
        self.inner.write(batch, sync)

    def iterate(self, prefix: bytes, reverse: bool = False,
                start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.iterate(prefix, reverse, start)

    def close(self) -> None:
        self.inner.close()


def test_failed_write_leaves_no_partial_block(world: World) -> None:
    inner = MemoryStore()
    store = FailingStore(inner)
    chain = ChainStore(store, world.genesis)
    commit_envelopes(chain, world.envelopes(0, 3), world.validators)
    before = snapshot(inner)
    envs = world.envelopes(3, 4)
    header = chain.next_header(envs, time=block_time(2), proposer=1)
    cert = certify(header, world.validators, world.genesis)
    store.armed = True
    with pytest.raises(OSError):
        chain.commit_block(header, envs, cert)
    assert snapshot(inner) == before
    assert chain.height == 1 and chain.log.size == 3
    reopened = ChainStore(inner, world.genesis)
    assert reopened.height == 1 and reopened.log.size == 3
    assert reopened.record_location(envs[0].id) is None
    assert reopened.id_for_nonce(world.submitter.public_key, 3) is None
    # The same block commits afterwards, on either handle.
    chain.commit_block(header, envs, cert)
    assert chain.height == 2 and chain.record_location(envs[3].id) == (2, 6)


def test_write_error_after_landing_resyncs_from_the_store(world: World) -> None:
    inner = MemoryStore()
    store = FailingStore(inner, after=True)
    chain = ChainStore(store, world.genesis)
    envs = world.envelopes(0, 2)
    header = chain.next_header(envs, time=1, proposer=0)
    store.armed = True
    with pytest.raises(OSError):
        chain.commit_block(header, envs, certify(header, world.validators, world.genesis))
    assert chain.height == 1 and chain.log.size == 2
    assert chain.log.root() == header.log_root


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from helpers import as_genesis, commit_envelopes, make_envelopes, make_genesis
    from ledger.chain import ChainStore
    from ledger.storage import LevelDBStore

    doc, validators, submitter = make_genesis(4, "test")
    genesis = as_genesis(doc)
    store = LevelDBStore({path!r})
    chain = ChainStore(store, genesis)
    commit_envelopes(chain, make_envelopes(submitter, "test", 3, 0), validators)
    real_write = store.write

    def dying_write(batch, sync=True):
        # Die with the block's batch fully built: before LevelDB sees it, or
        # just after the synced write returned (before any in-memory update).
        if {when!r} == "after":
            real_write(batch, sync)
        os.kill(os.getpid(), signal.SIGKILL)

    store.write = dying_write
    commit_envelopes(chain, make_envelopes(submitter, "test", 5, 3), validators)
    print("unreachable")
    """
)


@pytest.mark.parametrize("when,height", [("before", 1), ("after", 2)])
def test_process_killed_mid_commit(world: World, tmp_path: Path, when: str, height: int) -> None:
    path = str(tmp_path / "chain")
    code = CRASH_SCRIPT.format(tests=str(TESTS_DIR), path=path, when=when)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -9, done.stderr
    assert "unreachable" not in done.stdout
    chain = ChainStore(LevelDBStore(path), world.genesis)  # check_integrity passes
    try:
        block2 = world.envelopes(3, 5)
        assert chain.height == height
        assert chain.log.size == (3 if height == 1 else 8)
        present = chain.record_location(block2[0].id) is not None
        assert present == (height == 2)
        assert (chain.id_for_nonce(world.submitter.public_key, 7) is not None) == present
        if height == 1:
            commit_envelopes(chain, block2, world.validators)
        assert chain.height == 2
        assert chain.block_record_ids(2) == [e.id for e in block2]
        assert chain.records_by_submitter(world.submitter.public_key)[-1] == (7, block2[-1].id)
    finally:
        chain.close()


# --------------------------------------------------------------- corruption


def flip(store: KeyValueStore, key: bytes, at: int = -1) -> None:
    value = store.get(key)
    assert value is not None
    damaged = bytearray(value)
    damaged[at] ^= 0x01
    batch = WriteBatch()
    batch.put(key, bytes(damaged))
    store.write(batch)


def test_flipped_envelope_is_detected_on_read(world: World) -> None:
    store, chain = built(world)
    flip(store, schema.envelope_key(1), at=20)
    with pytest.raises(StorageCorruption, match="leaf 1"):
        chain.envelope_at(1)
    with pytest.raises(StorageCorruption):
        chain.block_envelopes(1)
    record_id = chain.block_record_ids(2)[0]
    assert chain.envelope(record_id) is not None  # other leaves still serve
    ChainStore(store, world.genesis)  # not the newest leaf: open does not read it


def test_whole_block_reads_check_every_envelope(world: World) -> None:
    """block_envelopes (catch-up serving) reads a block in one range scan:
    a damaged or missing envelope anywhere in it is still named."""
    store, chain = built(world)
    first = chain.block_envelopes(1)
    assert first == [chain.envelope_at(i) for i in range(len(first))]
    flip(store, schema.envelope_key(2), at=20)
    with pytest.raises(StorageCorruption, match="leaf 2 does not match"):
        chain.block_envelopes(1)
    batch = WriteBatch()
    batch.delete(schema.envelope_key(1))
    store.write(batch)
    with pytest.raises(StorageCorruption, match="leaf 1 is missing"):
        chain.block_envelopes(1)


def test_flipped_newest_envelope_is_detected_on_open(world: World) -> None:
    store, chain = built(world)
    flip(store, schema.envelope_key(chain.log.size - 1))
    with pytest.raises(StorageCorruption, match="leaf 7"):
        ChainStore(store, world.genesis)


def test_flipped_leaf_hash_is_detected(world: World) -> None:
    store, chain = built(world)
    flip(store, *node_location(0, 2))
    # The open chain holds the last, partial Merkle tile in memory (the next
    # append rewrites it from there); a chain opened on the store reads it.
    assert chain.envelope_at(2)
    with pytest.raises(StorageCorruption, match="leaf 2"):
        ChainStore(store, world.genesis).envelope_at(2)


def test_flipped_old_header_is_detected_on_read(world: World) -> None:
    store, chain = built(world)
    flip(store, schema.header_key(1), at=-3)
    with pytest.raises(StorageCorruption, match="block 1"):
        chain.header(1)
    with pytest.raises(StorageCorruption):
        chain.certificate(1)
    assert chain.header(3) is not None


def test_flipped_prev_header_is_detected_on_open(world: World) -> None:
    store, _ = built(world)
    flip(store, schema.header_key(2), at=-3)
    with pytest.raises(StorageCorruption, match="header 2"):
        ChainStore(store, world.genesis)


def test_flipped_tip_header_is_detected_on_open(world: World, tmp_path: Path) -> None:
    path = str(tmp_path / "chain")
    chain = ChainStore(LevelDBStore(path), world.genesis)
    three_blocks(chain, world)
    chain.close()
    store = LevelDBStore(path)
    flip(store, schema.header_key(3), at=-3)
    try:
        with pytest.raises(StorageCorruption, match="header of block 3"):
            ChainStore(store, world.genesis)
    finally:
        store.close()


@pytest.mark.parametrize("key,at,match", [
    (schema.certificate_key(3), -1, "certificate"),
    (schema.META_LOG_SIZE, -1, "log"),
    (*node_location(0, 7), "leaf 7"),
    (*node_location(3, 0), "log root"),  # the one peak of a log of 8
])
def test_damage_near_the_tip_fails_open(world: World, key: bytes, at: int, match: str) -> None:
    store, _ = built(world)
    flip(store, key, at)
    with pytest.raises(StorageCorruption, match=match):
        ChainStore(store, world.genesis)


def test_missing_pieces_fail_open(world: World) -> None:
    for key in (schema.header_key(3), schema.certificate_key(3), node_location(3, 0)[0],
                schema.header_key(2)):
        store, _ = built(world)
        batch = WriteBatch()
        batch.delete(key)
        store.write(batch)
        with pytest.raises(StorageCorruption):
            ChainStore(store, world.genesis)
