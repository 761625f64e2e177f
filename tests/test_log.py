"""The persistent Merkle log against the in-memory RFC 9162 reference
(ledger.merkle) and an independent implementation (pymerkle)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle, schema
from ledger.errors import StorageCorruption
from ledger.log import MerkleLog, fold_peaks, peak_positions
from ledger.storage import KeyValueStore, LevelDBStore, MemoryStore, WriteBatch


def leaf_data(i: int) -> bytes:
    return b"leaf-" + i.to_bytes(8, "big")


def leaf_hashes(first: int, count: int) -> list[bytes]:
    return [merkle.leaf_hash(leaf_data(i)) for i in range(first, first + count)]


def append(log: MerkleLog, store: KeyValueStore, hashes: list[bytes]) -> tuple[int, bytes]:
    batch = WriteBatch()
    size, root = log.stage(hashes, batch)
    store.write(batch)
    log.applied(size)
    return size, root


def build(store: KeyValueStore, blocks: list[int]) -> tuple[MerkleLog, list[bytes]]:
    log = MerkleLog(store)
    leaves: list[bytes] = []
    for count in blocks:
        new = leaf_hashes(len(leaves), count)
        size, root = append(log, store, new)
        leaves += new
        assert size == len(leaves)
        assert root == merkle.root(leaves)
    return log, leaves


class CountingStore:
    """Counts reads, to pin down the O(log n) claims without timing anything."""

    def __init__(self, inner: KeyValueStore) -> None:
        self.inner = inner
        self.reads = 0

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return self.inner.get(key)

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        self.inner.write(batch, sync)

    def iterate(self, prefix: bytes, reverse: bool = False,
                start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        raise AssertionError("the log never scans")

    def close(self) -> None:
        self.inner.close()


# ------------------------------------------------------------ reference match


def test_empty_log() -> None:
    log = MerkleLog(MemoryStore())
    assert log.size == 0
    assert log.root() == merkle.EMPTY_ROOT == log.root(0)
    assert log.preview([]) == (0, merkle.EMPTY_ROOT)


def test_every_size_root_and_path_matches_reference() -> None:
    rng = random.Random(1)
    blocks = [rng.choice([0, 1, 1, 2, 3, 4, 7, 8, 9]) for _ in range(25)]
    log, leaves = build(MemoryStore(), blocks)
    assert log.size == len(leaves) > 64
    for size in range(len(leaves) + 1):
        prefix = leaves[:size]
        assert log.root(size) == merkle.root(prefix)
        for index in range(size):
            assert log.inclusion_path(index, size) == merkle.inclusion_path(index, prefix)
        for old in range(1, size + 1):
            assert log.consistency_path(old, size) == merkle.consistency_path(old, prefix)


def test_one_leaf_at_a_time_matches_reference() -> None:
    store = MemoryStore()
    log = MerkleLog(store)
    leaves: list[bytes] = []
    for i in range(130):
        leaves += leaf_hashes(i, 1)
        assert append(log, store, leaves[-1:]) == (i + 1, merkle.root(leaves))
    assert [log.leaf_hash(i) for i in range(130)] == leaves


@settings(max_examples=60, deadline=None, derandomize=True)
@given(blocks=st.lists(st.integers(min_value=0, max_value=70), min_size=1, max_size=8),
       data=st.data())
def test_hypothesis_blocks_match_reference(blocks: list[int], data: st.DataObject) -> None:
    log, leaves = build(MemoryStore(), blocks)
    n = len(leaves)
    if n == 0:
        return
    size = data.draw(st.integers(min_value=1, max_value=n))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    old = data.draw(st.integers(min_value=1, max_value=size))
    lo = data.draw(st.integers(min_value=0, max_value=size - 1))
    hi = data.draw(st.integers(min_value=lo + 1, max_value=size))
    prefix = leaves[:size]
    assert log.root(size) == merkle.root(prefix)
    assert log.inclusion_path(index, size) == merkle.inclusion_path(index, prefix)
    assert log.consistency_path(old, size) == merkle.consistency_path(old, prefix)
    assert log.subtree_hash(lo, hi) == merkle.root(leaves[lo:hi])
    merkle.verify_inclusion(index, size, leaves[index], log.inclusion_path(index, size),
                            log.root(size))
    merkle.verify_consistency(old, size, log.root(old), log.root(size),
                              log.consistency_path(old, size))


def test_defaults_are_the_current_size() -> None:
    log, leaves = build(MemoryStore(), [11])
    assert log.inclusion_path(3) == merkle.inclusion_path(3, leaves)
    assert log.consistency_path(5) == merkle.consistency_path(5, leaves)
    assert log.consistency_path(11) == []


def test_peak_helpers() -> None:
    assert peak_positions(0) == []
    assert peak_positions(13) == [(3, 0), (2, 2), (0, 12)]
    leaves = leaf_hashes(0, 13)
    peaks = [merkle.root(leaves[0:8]), merkle.root(leaves[8:12]), leaves[12]]
    assert fold_peaks(peaks) == merkle.root(leaves)


# ----------------------------------------------------------------- pymerkle


def test_pymerkle_roots_and_inclusion_agree() -> None:
    pymerkle = pytest.importorskip("pymerkle")
    rng = random.Random(9)
    total = 2100
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for i in range(total):
        tree.append_entry(leaf_data(i))
    store = MemoryStore()
    log = MerkleLog(store)
    done = 0
    while done < total:
        count = min(total - done, rng.choice([1, 17, 100, 255, 256, 300]))
        append(log, store, leaf_hashes(done, count))
        done += count
    sizes = {1, 2, 3, 1024, 1025, 2047, 2048, total} | {rng.randrange(1, total + 1)
                                                        for _ in range(40)}
    for size in sorted(sizes):
        assert log.root(size) == tree.get_root(size)
        index = rng.randrange(size)
        # pymerkle counts leaves from one and puts the leaf itself first.
        assert log.inclusion_path(index, size) == tree.prove_inclusion(index + 1, size).path[1:]


# -------------------------------------------------------------- persistence


def test_reopen_from_leveldb_and_keep_appending(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    store = LevelDBStore(path)
    log, leaves = build(store, [5, 0, 33, 64, 1])
    root = log.root()
    store.close()

    store = LevelDBStore(path)
    try:
        reopened = MerkleLog(store)
        assert reopened.size == len(leaves)
        assert reopened.root() == root
        assert reopened.root(37) == merkle.root(leaves[:37])
        new = leaf_hashes(len(leaves), 29)
        leaves += new
        assert append(reopened, store, new) == (len(leaves), merkle.root(leaves))
        assert reopened.inclusion_path(100, len(leaves)) == merkle.inclusion_path(100, leaves)
    finally:
        store.close()


def test_stored_nodes_are_exactly_the_perfect_subtrees() -> None:
    store = MemoryStore()
    build(store, [3, 10])
    nodes = [schema.unpack_node_key(k) for k, _ in store.iterate(schema.NODE)]
    expected = [(level, i) for level in range(4) for i in range(13 >> level)]
    assert nodes == expected  # level-major, index order: big-endian keys sort naturally


# ------------------------------------------------------- staging semantics


def test_preview_and_stage_write_nothing_until_applied() -> None:
    store = MemoryStore()
    log, leaves = build(store, [6])
    before = sorted(store.iterate(b""))
    new = leaf_hashes(6, 5)
    expected = (11, merkle.root(leaves + new))
    assert log.preview(new) == expected
    batch = WriteBatch()
    assert log.stage(new, batch) == expected
    assert sorted(store.iterate(b"")) == before
    assert (log.size, log.root()) == (6, merkle.root(leaves))
    # A staged batch that is never written leaves a usable log behind.
    assert append(log, store, new[:2]) == (8, merkle.root(leaves + new[:2]))


def test_applied_without_matching_write_is_refused() -> None:
    store = MemoryStore()
    log, _ = build(store, [4])
    log.stage(leaf_hashes(4, 2), WriteBatch())
    with pytest.raises(ValueError):
        log.applied(6)
    assert log.size == 4


def test_applied_reloads_when_another_handle_wrote() -> None:
    store = MemoryStore()
    log, leaves = build(store, [4])
    other = MerkleLog(store)
    new = leaf_hashes(4, 3)
    append(other, store, new)
    log.applied(7)
    assert log.root() == merkle.root(leaves + new)


def test_bad_arguments() -> None:
    log, _ = build(MemoryStore(), [5])
    for call in (
        lambda: log.root(6),
        lambda: log.root(-1),
        lambda: log.leaf_hash(5),
        lambda: log.inclusion_path(5, 5),
        lambda: log.inclusion_path(0, 6),
        lambda: log.consistency_path(0, 5),
        lambda: log.consistency_path(4, 3),
        lambda: log.consistency_path(1, 6),
        lambda: log.subtree_hash(3, 3),
        lambda: log.subtree_hash(0, 6),
        lambda: log.preview([b"short"]),
    ):
        with pytest.raises(ValueError):
            call()


# -------------------------------------------------------------- complexity


def test_reads_are_logarithmic_and_appends_read_nothing() -> None:
    counting = CountingStore(MemoryStore())
    log = MerkleLog(counting)
    size = 0
    rng = random.Random(5)
    while size < 5000:
        count = rng.randrange(1, 400)
        counting.reads = 0
        append(log, counting, leaf_hashes(size, count))
        size += count
        assert counting.reads == 1  # applied() confirms the size; the frontier is cached
    depth = size.bit_length()
    for _ in range(50):
        n = rng.randrange(1, size + 1)
        counting.reads = 0
        log.root(n)
        assert counting.reads <= depth
        counting.reads = 0
        log.inclusion_path(rng.randrange(n), n)
        assert counting.reads <= 2 * depth
        counting.reads = 0
        log.consistency_path(rng.randrange(1, n + 1), n)
        assert counting.reads <= 2 * depth
    counting.reads = 0
    log.root()
    assert counting.reads == 0


def test_memory_is_the_frontier_only() -> None:
    store = MemoryStore()
    log, leaves = build(store, [1000, 23, 1])
    assert len(log._state.peaks) == bin(len(leaves)).count("1")


# -------------------------------------------------------------- corruption


def test_missing_node_is_storage_corruption() -> None:
    store = MemoryStore()
    build(store, [16, 5])
    batch = WriteBatch()
    batch.delete(schema.node_key(2, 1))  # leaves 4..7, inside the first peak
    store.write(batch)
    log = MerkleLog(store)
    assert log.root() == log.root(21)  # the frontier does not need it
    with pytest.raises(StorageCorruption, match="level 2, index 1"):
        log.consistency_path(4, 16)
    with pytest.raises(StorageCorruption):
        log.inclusion_path(0, 16)


def test_missing_frontier_node_fails_on_open() -> None:
    store = MemoryStore()
    build(store, [21])
    batch = WriteBatch()
    batch.delete(schema.node_key(2, 4))  # leaves 16..19: a peak of 21
    store.write(batch)
    with pytest.raises(StorageCorruption, match="level 2, index 4"):
        MerkleLog(store)


def test_truncated_node_is_storage_corruption() -> None:
    store = MemoryStore()
    build(store, [8])
    store.write(_put(schema.node_key(0, 3), b"\x00" * 31))
    with pytest.raises(StorageCorruption):
        MerkleLog(store).leaf_hash(3)


def _put(key: bytes, value: bytes) -> WriteBatch:
    batch = WriteBatch()
    batch.put(key, value)
    return batch


def test_leaf_hash_helper_is_sha256() -> None:
    assert leaf_hashes(0, 1)[0] == hashlib.sha256(b"\x00" + leaf_data(0)).digest()


def test_node_cache_is_bounded_and_changes_no_proof() -> None:
    from ledger.log import cache_min_level

    store = MemoryStore()
    cached = MerkleLog(store, node_cache=64)
    hashes: list[bytes] = []
    rng = random.Random(7)
    for block in range(30):
        new = leaf_hashes(len(hashes), 97)
        append(cached, store, new)
        hashes += new
        for _ in range(20):
            i = rng.randrange(len(hashes))
            size = rng.randrange(i + 1, len(hashes) + 1)
            assert cached.inclusion_path(i, size) == merkle.inclusion_path(i, hashes[:size])
            old = rng.randrange(1, len(hashes) + 1)
            assert cached.consistency_path(old) == merkle.consistency_path(old, hashes)
        assert len(cached._cache) <= 64, block
    # Only the levels whose whole population fits are cached.
    assert cache_min_level(len(hashes), 64) > 0
    assert all(slot & 0xFF >= cache_min_level(len(hashes), 64) for slot in cached._cache)
    # A fresh handle without a cache gives the same answers.
    plain = MerkleLog(store, node_cache=0)
    assert plain.inclusion_path(5) == cached.inclusion_path(5)
