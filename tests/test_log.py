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
from ledger.tiles import (
    TILE_BYTES,
    TILE_HEIGHT,
    TILE_WIDTH,
    node_location,
    tile_entries,
)


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


def test_stored_tiles_hold_exactly_the_perfect_subtrees() -> None:
    store = MemoryStore()
    size = 3 * TILE_WIDTH + 13
    _, leaves = build(store, [3, 10, TILE_WIDTH, 2 * TILE_WIDTH])
    tiles = [schema.unpack_tile_key(k) for k, _ in store.iterate(schema.TILE)]
    # Three full tiles and one partial in stratum 0; one partial above it.
    assert tiles == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    assert [len(v) for _, v in store.iterate(schema.TILE)] == [
        TILE_BYTES] * 3 + [tile_entries(13) * 32, tile_entries(3) * 32]
    for level in range(size.bit_length()):
        for index in range(size >> level):
            key, at = node_location(level, index)
            value = store.get(key)
            assert value is not None
            lo, hi = index << level, (index + 1) << level
            assert value[at:at + 32] == merkle.root(leaves[lo:hi]), (level, index)


# ---------------------------------------------------------- tile boundaries


W = TILE_WIDTH


def _check_size(log: MerkleLog, leaves: list[bytes], size: int, probes: list[int]) -> None:
    prefix = leaves[:size]
    assert log.root(size) == merkle.root(prefix), size
    for index in probes:
        if 0 <= index < size:
            assert log.inclusion_path(index, size) == merkle.inclusion_path(index, prefix)
            assert log.leaf_hash(index) == leaves[index]
        if 0 < index <= size:
            assert log.consistency_path(index, size) == merkle.consistency_path(index, prefix)


def test_sizes_around_tile_boundaries() -> None:
    # Appends that end one before, on and one after each tile boundary, so
    # tiles are completed, started and continued by every kind of append.
    store = MemoryStore()
    log, leaves = build(store, [W - 1, 1, 1, W - 2, 1, 2 * W, W + 1, 3, W - 4])
    assert log.size == 6 * W
    edges = sorted({e + d for e in range(0, log.size + 1, W) for d in (-2, -1, 0, 1, 2)})
    sizes = [n for n in edges if 0 < n <= log.size]
    for size in sizes:
        _check_size(log, leaves, size, sizes)


def test_leaf_hash_ranges_span_tiles() -> None:
    store = MemoryStore()
    log, leaves = build(store, [W - 1, 1, 1, W - 2, 1, 2 * W, 5])
    for lo, hi in [(0, 0), (0, 1), (W - 3, W + 3), (0, log.size), (log.size - 7, log.size)]:
        assert log.leaf_hashes(lo, hi) == leaves[lo:hi]
    with pytest.raises(ValueError):
        log.leaf_hashes(0, log.size + 1)


def test_stratum_one_boundaries() -> None:
    # 2^16 leaves fill stratum 1's first tile: its root (level 16) is the
    # first unit of stratum 2.
    store = MemoryStore()
    log, leaves = build(store, [W * W - 3, 2, 1, 1, W])
    size = log.size
    assert size == W * W + W + 1
    probes = [0, 1, W - 1, W, W * W - 2, W * W - 1, W * W, W * W + 1, size - 1, size]
    for n in (W * W - 1, W * W, W * W + 1, W * W + W, size):
        _check_size(log, leaves, n, probes)
    assert [k for k, _ in store.iterate(schema.tile_key(2, 0))] == [schema.tile_key(2, 0)]
    assert log.subtree_hash(0, W * W) == merkle.root(leaves[:W * W])


def test_past_roots_inside_a_partial_tile() -> None:
    store = MemoryStore()
    log, leaves = build(store, [W + 100])
    # Every past size whose last leaves are in the (in-memory) partial tile.
    for size in range(W, W + 101):
        assert log.root(size) == merkle.root(leaves[:size])
    # A fresh handle reads the same partial tile from the store.
    reopened = MerkleLog(store)
    for size in range(W - 3, W + 101, 7):
        assert reopened.root(size) == merkle.root(leaves[:size])
        assert reopened.consistency_path(size) == merkle.consistency_path(size, leaves)


def test_reopen_after_a_partial_tile_and_continue(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    leaves: list[bytes] = []
    for blocks in ([W + 5], [3], [W - 8], [1], [W * 2 + 1]):
        store = LevelDBStore(path)
        try:
            log = MerkleLog(store)
            assert log.size == len(leaves)
            assert log.root() == merkle.root(leaves)
            for count in blocks:
                new = leaf_hashes(len(leaves), count)
                leaves += new
                assert append(log, store, new) == (len(leaves), merkle.root(leaves))
            _check_size(log, leaves, len(leaves), [0, W - 1, W, len(leaves) - 1])
        finally:
            store.close()
    assert len(leaves) == 4 * W + 2


def test_tiles_are_a_prefix_of_their_growth() -> None:
    # A partial tile is the prefix of its later self: nothing moves.
    store = MemoryStore()
    build(store, [37])
    before = store.get(schema.tile_key(0, 0))
    log = MerkleLog(store)
    append(log, store, leaf_hashes(37, W))
    after = store.get(schema.tile_key(0, 0))
    assert before is not None and after is not None
    assert len(after) == TILE_BYTES and after.startswith(before)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(blocks=st.lists(st.sampled_from([0, 1, 2, 3, W - 1, W, W + 1, 2 * W - 1, 3 * W + 7]),
                       min_size=1, max_size=6),
       data=st.data())
def test_hypothesis_tile_boundaries_match_reference(blocks: list[int],
                                                   data: st.DataObject) -> None:
    store = MemoryStore()
    log, leaves = build(store, blocks)
    n = len(leaves)
    if n == 0:
        return
    near = st.integers(min_value=-2, max_value=2)
    tile = st.integers(min_value=0, max_value=n // W)

    def around_edge() -> int:
        return min(n, max(1, data.draw(tile) * W + data.draw(near)))

    size = data.draw(st.one_of(st.integers(min_value=1, max_value=n), st.builds(around_edge)))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    old = data.draw(st.integers(min_value=1, max_value=size))
    prefix = leaves[:size]
    handle = data.draw(st.sampled_from([log, MerkleLog(store), MerkleLog(store, node_cache=0)]))
    assert handle.root(size) == merkle.root(prefix)
    assert handle.inclusion_path(index, size) == merkle.inclusion_path(index, prefix)
    assert handle.consistency_path(old, size) == merkle.consistency_path(old, prefix)
    assert handle.leaf_hash(index) == leaves[index]


def test_node_location_matches_tile_layout() -> None:
    assert TILE_HEIGHT == 8 and TILE_BYTES == (2 * W - 2) * 32
    assert node_location(0, 0) == (schema.tile_key(0, 0), 0)
    assert node_location(0, 1) == (schema.tile_key(0, 0), 32)
    assert node_location(1, 0) == (schema.tile_key(0, 0), 64)
    assert node_location(7, 1) == (schema.tile_key(0, 0), TILE_BYTES - 32)  # last entry
    assert node_location(0, W) == (schema.tile_key(0, 1), 0)
    assert node_location(8, 0) == (schema.tile_key(1, 0), 0)  # a tile root is a unit above
    assert node_location(9, 0) == (schema.tile_key(1, 0), 64)
    assert [tile_entries(u) for u in (0, 1, 2, 3, 4, W - 1, W)] == [0, 1, 3, 4, 7, 2 * W - 10,
                                                                  2 * W - 2]


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


def test_missing_tile_is_storage_corruption() -> None:
    store = MemoryStore()
    build(store, [TILE_WIDTH, 5])
    batch = WriteBatch()
    batch.delete(schema.tile_key(0, 0))  # leaves 0..255: inside the first peak
    store.write(batch)
    log = MerkleLog(store)
    size = TILE_WIDTH + 5
    assert log.root() == log.root(size)  # the frontier does not need it
    with pytest.raises(StorageCorruption, match=r"tile \(stratum 0, index 0.* is missing"):
        log.consistency_path(4, TILE_WIDTH)
    with pytest.raises(StorageCorruption, match="tile"):
        log.inclusion_path(0, TILE_WIDTH)
    with pytest.raises(StorageCorruption, match="level 2, index 1"):
        log.subtree_hash(4, 8)
    with pytest.raises(StorageCorruption):
        log.leaf_hash(3)
    assert log.leaf_hash(TILE_WIDTH + 1) == leaf_hashes(TILE_WIDTH + 1, 1)[0]


def test_missing_frontier_tile_fails_on_open() -> None:
    store = MemoryStore()
    build(store, [21])
    batch = WriteBatch()
    batch.delete(schema.tile_key(0, 0))  # the partial tile holding every peak of 21
    store.write(batch)
    with pytest.raises(StorageCorruption, match=r"tile \(stratum 0, index 0.* is missing"):
        MerkleLog(store)


def test_missing_upper_tile_fails_on_open() -> None:
    store = MemoryStore()
    build(store, [TILE_WIDTH * 3])
    batch = WriteBatch()
    batch.delete(schema.tile_key(1, 0))  # the partial stratum-1 tile: peak (9, 0) is in it
    store.write(batch)
    with pytest.raises(StorageCorruption, match=r"stratum 1, index 0"):
        MerkleLog(store)


@pytest.mark.parametrize("cut", [1, 32, TILE_BYTES - 32])
def test_short_full_tile_is_storage_corruption(cut: int) -> None:
    store = MemoryStore()
    build(store, [TILE_WIDTH + 3])
    value = store.get(schema.tile_key(0, 0))
    assert value is not None and len(value) == TILE_BYTES
    store.write(_put(schema.tile_key(0, 0), value[:cut]))
    log = MerkleLog(store)
    with pytest.raises(StorageCorruption, match=f"has {cut} bytes, expected {TILE_BYTES}"):
        log.leaf_hash(3)
    with pytest.raises(StorageCorruption, match="leaves \\[0, 256\\)"):
        log.inclusion_path(TILE_WIDTH - 1)


def test_short_partial_tile_fails_on_open() -> None:
    store = MemoryStore()
    build(store, [8])
    value = store.get(schema.tile_key(0, 0))
    assert value is not None and len(value) == tile_entries(8) * 32
    store.write(_put(schema.tile_key(0, 0), value[:-1]))
    with pytest.raises(StorageCorruption, match="has 479 bytes, expected 480"):
        MerkleLog(store)


def test_flipped_node_changes_the_root() -> None:
    store = MemoryStore()
    _, leaves = build(store, [TILE_WIDTH * 2 + 7])
    key, at = node_location(3, 5)
    value = bytearray(store.get(key) or b"")
    value[at] ^= 1
    store.write(_put(key, bytes(value)))
    log = MerkleLog(store)
    # node_location names the bytes of node (3, 5) (leaves 40..47) and no other.
    assert log.subtree_hash(40, 48) != merkle.root(leaves[40:48])
    assert log.subtree_hash(32, 40) == merkle.root(leaves[32:40])
    assert log.inclusion_path(32, TILE_WIDTH)[3] != merkle.inclusion_path(32, leaves[:TILE_WIDTH])[3]
    assert log.root(TILE_WIDTH) == merkle.root(leaves[:TILE_WIDTH])  # (8, 0) is stored above


def _put(key: bytes, value: bytes) -> WriteBatch:
    batch = WriteBatch()
    batch.put(key, value)
    return batch


def test_leaf_hash_helper_is_sha256() -> None:
    assert leaf_hashes(0, 1)[0] == hashlib.sha256(b"\x00" + leaf_data(0)).digest()


def test_node_cache_is_bounded_and_changes_no_proof() -> None:
    from ledger.log import cache_min_stratum

    store = MemoryStore()
    capacity = 3 * (2 * TILE_WIDTH - 2)  # three tiles
    cached = MerkleLog(store, node_cache=capacity)
    plain = MerkleLog(store, node_cache=0)
    hashes: list[bytes] = []
    rng = random.Random(7)
    # Past two full stratum-1 tiles (2 * 2^16 leaves), so stratum 1 gets cached.
    for block in range(14):
        new = leaf_hashes(len(hashes), 9973)
        append(cached, store, new)
        hashes += new
        plain.reload()
        for _ in range(20):
            i = rng.randrange(len(hashes))
            size = rng.randrange(i + 1, len(hashes) + 1)
            assert cached.inclusion_path(i, size) == plain.inclusion_path(i, size)
            old = rng.randrange(1, len(hashes) + 1)
            assert cached.consistency_path(old) == plain.consistency_path(old)
            assert cached.root(size) == plain.root(size)
        assert len(cached._cache) * (2 * TILE_WIDTH - 2) <= capacity, block
    # Only the strata whose whole population fits are cached.
    assert cache_min_stratum(len(hashes), capacity) == 1
    assert cached._cache and all(slot & 63 >= 1 for slot in cached._cache)
    assert not plain._cache
    for i, old in ((5, 70_000), (len(hashes) - 1, len(hashes) - 1), (70_001, 131_072)):
        assert cached.inclusion_path(i) == merkle.inclusion_path(i, hashes)
        assert cached.consistency_path(old) == merkle.consistency_path(old, hashes)


def test_past_size_peaks_are_cached_bounded_and_cleared_on_reload(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Proofs against a past size (a block's own log size) read its peaks
    once; the cache keeps the newest PAST_SIZE_CACHE sizes and every path
    stays the reference's."""
    import ledger.log

    monkeypatch.setattr(ledger.log, "PAST_SIZE_CACHE", 4)
    counting = CountingStore(MemoryStore())
    leaves = build(counting, [700, 300, 1, 57, 2000])[1]
    log = MerkleLog(counting, node_cache=0, recent_tiles=0)  # every tile from the store
    sizes = [700, 1000, 1001, 1058, 2222, 2700]
    for size in sizes:
        counting.reads = 0
        first = log.inclusion_path(3, size)  # leaf 3: its siblings are in tile 0
        cold = counting.reads
        counting.reads = 0
        assert log.inclusion_path(3, size) == first == merkle.inclusion_path(3, leaves[:size])
        assert counting.reads < cold, (size, cold, counting.reads)
    assert list(log._past) == sizes[-4:]
    assert log.consistency_path(700, 1058) == merkle.consistency_path(700, leaves[:1058])
    log.reload()
    assert not log._past
    assert log.inclusion_path(3, 700) == merkle.inclusion_path(3, leaves[:700])


def test_recent_tiles_are_bounded_and_change_no_proof() -> None:
    """Full tiles below the cached strata are kept after a read (newest
    RECENT_TILES): paths and leaf hashes stay those of a log that reads
    every tile from the store, and the memo never exceeds its bound."""
    counting = CountingStore(MemoryStore())
    leaves = build(counting, [5000, 3000, 1, 2000])[1]
    memo = MerkleLog(counting, node_cache=0, recent_tiles=4)
    plain = MerkleLog(counting, node_cache=0, recent_tiles=0)
    rng = random.Random(11)
    for _ in range(300):
        i = rng.randrange(len(leaves))
        size = rng.randrange(i + 1, len(leaves) + 1)
        assert memo.leaf_hash(i) == plain.leaf_hash(i) == leaves[i]
        assert memo.inclusion_path(i, size) == plain.inclusion_path(i, size)
        assert len(memo._recent) <= 4
    assert memo._recent and not plain._recent
    # The second read of the same leaf's tile comes from the memo.
    memo.leaf_hash(9)
    counting.reads = 0
    assert memo.inclusion_path(9, 4096) == merkle.inclusion_path(9, leaves[:4096])
    assert counting.reads == 0
    memo.reload()
    assert not memo._recent
