"""The persistent, append-only RFC 9162 log, stored as tiles.

Node ``(l, i)`` is the MTH of leaves ``[i * 2^l, (i + 1) * 2^l)``; level 0
holds the leaf hashes.  Every complete (perfect) node is stored once and
never changes, so:

* the MTH of any RFC-shaped range (a left subtree, or a right part ending at
  some past size) is a right fold of at most ``log2 n`` stored nodes, which
  gives the root at any past size and every path in O(log n) reads;
* appending touches only the "right frontier": the perfect subtrees
  ("peaks") of the current size, one per set bit, plus the partial tiles
  below.  That frontier is all this class keeps in memory besides a bounded
  cache, so memory is flat however large the log grows.

The stored nodes are packed into **tiles** - one value per tile of up to
eight levels - whose byte layout, writes and path reads are
:mod:`ledger.tiles`; this module keeps the frontier, the cache and the
RFC 9162 proofs on top of them.

Path shapes are not re-derived here: inclusion and consistency paths are the
RFC recursion unrolled over perfect nodes (tested equal to
:mod:`ledger.merkle`, which stays the reference).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from . import schema
from .errors import StorageCorruption
from .merkle import (
    EMPTY_ROOT,
    HASH_LEN,
    perfect_subtrees,
    split_point,
)
from .native import native
from .storage import KeyValueStore, WriteBatch
from .tiles import (
    SLOT_SHIFT,
    TILE_BYTES,
    TILE_HEIGHT,
    TILE_NODES,
    UNIT_MASK,
    Run,
    Tile,
    node_error,
    siblings,
    stage_tiles,
    strata,
    tails_by_slot,
    tile_entries,
    tile_error,
    tile_offset,
)

MAX_SIZE = 2**64 - 1
_sha256 = hashlib.sha256

Peaks = Mapping[tuple[int, int], bytes]


@dataclass(frozen=True)
class _Frontier:
    """A committed size with its peaks ``{(level, index): hash}``, root and
    partial tiles (``tails[s]``: the bytes of stratum ``s``'s last, partial
    tile, ``b""`` when the stratum's units fill whole tiles).

    Immutable and swapped in one assignment, so a reader never sees the size
    of one state with the peaks of another.  The derived fields serve proofs
    at the current size, the common case, without any hashing or lookup.
    """

    size: int
    peaks: Peaks = field(repr=False)
    root: bytes = field(repr=False)
    tails: tuple[bytes, ...] = field(repr=False)
    # Peak hashes left to right; right_folds[j] is the one hash an
    # inclusion path gets for the peaks right of peak j (None for the last).
    peak_hashes: list[bytes] = field(init=False, repr=False)
    right_folds: list[bytes | None] = field(init=False, repr=False)
    tail_slots: dict[int, bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        hashes = [self.peaks[pos] for pos in peak_positions(self.size)]
        object.__setattr__(self, "peak_hashes", hashes)
        object.__setattr__(self, "right_folds", _right_folds(hashes))
        object.__setattr__(self, "tail_slots", tails_by_slot(self.size, self.tails))


@dataclass(frozen=True)
class _Growth:
    """What appending some leaves completes: the new nodes and the new peaks."""

    runs: list[Run]
    size: int
    peaks: dict[tuple[int, int], bytes]
    root: bytes


def _right_folds(hashes: list[bytes]) -> list[bytes | None]:
    """For peak hashes left to right, ``folds[j]``: the one hash an inclusion
    path gets for the peaks right of peak ``j`` (None for the last peak)."""
    folds: list[bytes | None] = [None] * len(hashes)
    for j in range(len(hashes) - 2, -1, -1):
        after = folds[j + 1]
        folds[j] = hashes[j + 1] if after is None else _sha256(
            b"\x01" + hashes[j + 1] + after).digest()
    return folds


# The peaks of a log are exactly RFC 9162's perfect subtrees of its size.
peak_positions = perfect_subtrees


def fold_peaks(hashes: Sequence[bytes]) -> bytes:
    """The root from peak hashes ordered left to right: RFC 9162 splits at the
    largest power of two, so the root is ``H(p0, H(p1, ... H(pk-1, pk)))``."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for peak in reversed(hashes[:-1]):
        acc = _sha256(b"\x01" + peak + acc).digest()
    return acc


def _pair_up(nodes: list[bytes]) -> list[bytes]:
    """Parents of consecutive pairs (an odd last node stays a peak)."""
    if native is not None:
        return native.pair_up(nodes)
    it = iter(nodes)
    return [_sha256(b"\x01" + left + right).digest() for left, right in zip(it, it, strict=False)]


def _grow(old: _Frontier, leaf_hashes: list[bytes]) -> _Growth:
    """All nodes completed by appending ``leaf_hashes``, and the new peaks.

    Works level by level so hashing runs in list comprehensions rather than
    per leaf: at level ``l`` the new nodes start at index ``old.size >> l``;
    when that index is odd its left sibling is the old peak at level ``l``.
    """
    runs: list[Run] = []
    level, first, nodes = 0, old.size, leaf_hashes
    while nodes:
        runs.append(Run(level, first, nodes))
        if first & 1:
            nodes = [old.peaks[(level, first - 1)], *nodes]
            first -= 1
        nodes = _pair_up(nodes)
        level, first = level + 1, first >> 1
    new_size = old.size + len(leaf_hashes)
    peaks = _new_peaks(old, runs, new_size)
    root = fold_peaks([peaks[pos] for pos in peak_positions(new_size)])
    return _Growth(runs, new_size, peaks, root)


def _new_peaks(old: _Frontier, runs: list[Run], new_size: int) -> dict[tuple[int, int], bytes]:
    by_level = {run.level: run for run in runs}
    peaks: dict[tuple[int, int], bytes] = {}
    for level, index in peak_positions(new_size):
        run = by_level.get(level)
        if run is not None and index >= run.first:
            peaks[(level, index)] = run.hashes[index - run.first]
        else:
            # Untouched by this append: the peak was already a peak.
            peaks[(level, index)] = old.peaks[(level, index)]
    return peaks


# 2^18 nodes (8 MiB of hashes): every stratum above 0 up to 2^25 leaves
# (33M), stratum 1 being 152 tiles at 10M leaves - with 2^16, a proof at 10M
# read a stratum-1 tile from the store too (docs/performance.md).
DEFAULT_NODE_CACHE = 1 << 18
# Past log sizes whose peak hashes and right folds are kept (a block's proofs
# are against its own log size).  ~2 KB each at a million leaves; at 4000
# records a block, 4096 sizes cover every block of a 16M-record log.
PAST_SIZE_CACHE = 4096
# Full tiles below the cached strata kept after a read (emptied when full):
# a bundle reads its leaf's stratum-0 tile for the envelope's leaf hash and
# again for the inclusion path (two calls), and an auditor asks for records
# that lie close together.  Full tiles never change.  16 KiB each.
RECENT_TILES = 64


def cache_min_stratum(size: int, capacity: int) -> int:
    """The lowest stratum whose complete tiles, with all above it, hold at
    most ``capacity`` nodes in a log of ``size`` leaves."""
    stratum = 0
    while True:
        nodes = sum(((size >> s * TILE_HEIGHT) >> TILE_HEIGHT) * TILE_NODES
                    for s in range(stratum, 64 // TILE_HEIGHT + 1))
        if nodes <= capacity:
            return stratum
        stratum += 1


class MerkleLog:
    """An RFC 9162 log over a :class:`~ledger.storage.KeyValueStore`.

    Tiles never change once full, so the upper strata - which every proof
    touches - are kept in a cache bounded by ``node_cache`` nodes: only
    strata whose whole population fits are cached, and the threshold rises
    as the log grows.  Memory stays fixed while a proof at a million leaves
    reads one stratum-0 tile.
    """

    def __init__(self, store: KeyValueStore, *, node_cache: int = DEFAULT_NODE_CACHE,
                 recent_tiles: int = RECENT_TILES) -> None:
        self._store = store
        self._cache_capacity = node_cache
        self._cache: dict[int, bytes] = {}
        self._recent: dict[int, bytes] = {}
        self._recent_capacity = recent_tiles
        self._cache_stratum = 1 << 8  # nothing is cached while loading
        self._past: dict[int, tuple[list[bytes], list[bytes | None]]] = {}
        self._state = self._load()
        self._cache_stratum = cache_min_stratum(self._state.size, node_cache)
        self._pending: _Frontier | None = None
        # The last append computed (its base state, leaf hashes, result): a
        # block's validation previews exactly what its commit then stages,
        # so the commit reuses the nodes instead of hashing them again.
        self._grown: tuple[_Frontier, list[bytes], _Growth] | None = None

    # ------------------------------------------------------------------ state

    def _load(self) -> _Frontier:
        raw = self._store.get(schema.META_LOG_SIZE)
        size = 0 if raw is None else schema.unpack_u64(raw, "log size")
        tails = tuple(self._read_tail(size, s) for s in range(strata(size)))
        # Peaks may sit in the tails just read: look there before the store.
        node = self._node_reader({}, self._tile_reader(tails_by_slot(size, tails)))
        peaks = {pos: node(*pos) for pos in peak_positions(size)}
        root = fold_peaks([peaks[pos] for pos in peak_positions(size)])
        return _Frontier(size, peaks, root, tails)

    def _read_tail(self, size: int, stratum: int) -> bytes:
        units = size >> stratum * TILE_HEIGHT
        if not units & UNIT_MASK:
            return b""
        index, expected = units >> TILE_HEIGHT, tile_entries(units & UNIT_MASK) * HASH_LEN
        value = self._store.get(schema.tile_key(stratum, index))
        if value is None or len(value) != expected:
            raise tile_error(value, stratum, index, expected)
        return value

    def reload(self) -> None:
        """Re-read the size and frontier from the store (drops any staged state)."""
        self._state = self._load()
        self._pending = None
        self._cache.clear()
        self._recent.clear()
        self._past.clear()
        self._cache_stratum = cache_min_stratum(self._state.size, self._cache_capacity)

    def _adopt(self, state: _Frontier) -> None:
        """Switch to a larger committed state; raise the cache threshold when
        the log has grown past what the cache may hold."""
        self._state = state
        stratum = cache_min_stratum(state.size, self._cache_capacity)
        if stratum != self._cache_stratum:
            self._cache_stratum = stratum
            mask = (1 << SLOT_SHIFT) - 1
            self._cache = {k: v for k, v in self._cache.items() if k & mask >= stratum}

    @property
    def size(self) -> int:
        return self._state.size

    def frontier(self) -> tuple[int, tuple[bytes, ...]]:
        """``(size, partial tile per stratum)`` of one committed state: what
        a state-sync snapshot carries (:mod:`ledger.statesync`)."""
        state = self._state
        return state.size, state.tails

    # ------------------------------------------------------------------ reads

    def _tile_reader(self, tails: Mapping[int, bytes]) -> Tile:
        """A tile accessor over one frontier snapshot's partial tiles
        (``tails``, by slot), memoised for one call.

        Partial tiles come from the snapshot (a past size's nodes are a
        prefix of them); full tiles from the cache or one store read, which
        must be exactly one full tile.  Using one snapshot also keeps a proof
        consistent if an append lands while it is being built.
        """
        memo: dict[int, bytes] = {}
        cache, min_stratum, get, key = (self._cache, self._cache_stratum,
                                        self._store.get, schema.tile_key)
        recent, recent_capacity = self._recent, self._recent_capacity

        def tile(stratum: int, index: int) -> bytes:
            slot = index << SLOT_SHIFT | stratum
            value = memo.get(slot)
            if value is None:
                value = tails.get(slot) or cache.get(slot) or recent.get(slot)
                if value is None:
                    value = get(key(stratum, index))
                    if value is None or len(value) != TILE_BYTES:
                        raise tile_error(value, stratum, index, TILE_BYTES)
                    if stratum >= min_stratum:
                        cache[slot] = value
                    elif recent_capacity:
                        if len(recent) >= recent_capacity:
                            recent.clear()  # one C call: safe beside a reader on another thread
                        recent[slot] = value
                memo[slot] = value
            return value

        return tile

    def _node_reader(self, peaks: Peaks, tile: Tile) -> Callable[[int, int], bytes]:
        """A perfect-node accessor: current ``peaks`` cost nothing (so the
        current root is free), every other node is a slice of its tile."""

        def node(level: int, index: int) -> bytes:
            value = peaks.get((level, index))
            if value is not None:
                return value
            stratum, rel = divmod(level, TILE_HEIGHT)
            unit_end = (index + 1) << rel
            try:
                data = tile(stratum, (unit_end - 1) >> TILE_HEIGHT)
            except StorageCorruption as exc:
                raise node_error(exc, level, index) from None
            at = tile_offset(rel, unit_end)
            value = data[at:at + HASH_LEN]
            if len(value) != HASH_LEN:  # only a bug could cut a validated tile short
                raise node_error(StorageCorruption("Merkle log tile too short"), level, index)
            return value

        return node

    def _current_nodes(self) -> tuple[_Frontier, Tile, Callable[[int, int], bytes]]:
        """One snapshot with its tile and node accessors (for one call)."""
        state = self._state
        tile = self._tile_reader(state.tail_slots)
        return state, tile, self._node_reader(state.peaks, tile)

    def _mth(self, lo: int, hi: int) -> bytes:
        """MTH of any range, folding perfect nodes."""
        node = self._current_nodes()[2]

        def mth(lo: int, hi: int) -> bytes:
            n = hi - lo
            if n & (n - 1) == 0 and lo & (n - 1) == 0:
                level = n.bit_length() - 1
                return node(level, lo >> level)
            k = split_point(n)
            return _sha256(b"\x01" + mth(lo, lo + k) + mth(lo + k, hi)).digest()

        return mth(lo, hi)

    def subtree_hash(self, lo: int, hi: int) -> bytes:
        """MTH of leaves ``[lo, hi)``.

        O(log n) reads whenever ``lo`` is a multiple of the largest power of
        two not above ``hi - lo`` - true of every range the RFC recursion
        asks for (roots, path siblings).  Other ranges are correct but cost
        up to ``hi - lo`` node lookups, since their tree shape shares no stored node.
        """
        if not 0 <= lo < hi <= self._state.size:
            raise ValueError(f"range [{lo}, {hi}) is not inside a log of {self._state.size}")
        return self._mth(lo, hi)

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self._state.size:
            raise ValueError(f"leaf {index} is not inside a log of {self._state.size}")
        return self._current_nodes()[2](0, index)

    def leaf_hashes(self, lo: int, hi: int) -> list[bytes]:
        """Leaf hashes ``[lo, hi)``: one tile read per 256 leaves (a block's
        worth for serving catch-up), where :meth:`leaf_hash` reads per call."""
        if not 0 <= lo <= hi <= self._state.size:
            raise ValueError(f"range [{lo}, {hi}) is not inside a log of {self._state.size}")
        node = self._current_nodes()[2]
        return [node(0, i) for i in range(lo, hi)]

    def root(self, size: int | None = None) -> bytes:
        """The root at ``size`` (default: now); any past size, O(log n) reads."""
        state = self._state
        if size is None or size == state.size:
            return state.root
        if not 0 <= size <= state.size:
            raise ValueError(f"size {size} is above the log size {state.size}")
        node = self._current_nodes()[2]
        return fold_peaks([node(*pos) for pos in peak_positions(size)])

    def inclusion_path(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 PATH(index, D[size]); ``size`` defaults to the current size."""
        size = self._state.size if size is None else size
        if not 0 <= index < size <= self._state.size:
            raise ValueError(f"no inclusion path for leaf {index} in a tree of {size} "
                             f"(log size {self._state.size})")
        return self._path_up(index, 0, size, *self._current_nodes())

    def consistency_path(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 PROOF(old_size, D[new_size]); ``new_size`` defaults to now.

        The RFC's SUBPROOF recursion stops at the largest perfect node ending
        at ``old_size`` (level = its trailing zeros); the proof is that node
        (left out when ``old_size`` is a power of two: it is the old root)
        followed by that node's inclusion path in ``D[new_size]``.
        """
        new_size = self._state.size if new_size is None else new_size
        if not 0 < old_size <= new_size <= self._state.size:
            raise ValueError(f"no consistency path from {old_size} to {new_size} "
                             f"(log size {self._state.size})")
        if old_size == new_size:
            return []
        level = (old_size & -old_size).bit_length() - 1
        state, tile, node = self._current_nodes()
        path = self._path_up(old_size - 1, level, new_size, state, tile, node)
        if old_size & (old_size - 1):
            path.insert(0, node(level, (old_size - 1) >> level))
        return path

    def _path_up(self, index: int, from_level: int, size: int, state: _Frontier, tile: Tile,
                 node: Callable[[int, int], bytes]) -> list[bytes]:
        """The inclusion path in ``D[size]`` of the node at ``from_level``
        above leaf ``index``: the RFC recursion unrolled (as in
        :func:`ledger.merkle.inclusion_path_by_nodes`) - the siblings inside
        the peak holding it, bottom up; then one hash for the peaks to its
        right; then each peak to its left, nearest first."""
        # Peaks follow the set bits of size, so the leaf's peak is at the
        # highest bit where index (below size) has a 0 and size a 1.
        peak_level = (index ^ size).bit_length() - 1
        j = (size >> peak_level + 1).bit_count()
        path = siblings(tile, index, from_level, peak_level)
        if size == state.size:  # the current size: every peak hash is at hand
            peak_hashes, right_folds = state.peak_hashes, state.right_folds
        else:
            peak_hashes, right_folds = self._past_peaks(size, node)
        right = right_folds[j]
        if right is not None:
            path.append(right)
        path.extend(reversed(peak_hashes[:j]))
        return path

    def _past_peaks(self, size: int, node: Callable[[int, int], bytes]
                    ) -> tuple[list[bytes], list[bytes | None]]:
        """Peak hashes and right folds at a past ``size``, from the bounded
        cache (nodes of a past size never change; ``reload`` clears it)."""
        found = self._past.get(size)
        if found is None:
            hashes = [node(level, i) for level, i in peak_positions(size)]
            found = hashes, _right_folds(hashes)
            if len(self._past) >= PAST_SIZE_CACHE:
                del self._past[next(iter(self._past))]  # the oldest entry
            self._past[size] = found
        return found

    # ---------------------------------------------------------------- appends

    def _grow_checked(self, leaf_hashes: Sequence[bytes]) -> _Growth:
        hashes = list(leaf_hashes)
        grown, state = self._grown, self._state
        if grown is not None and grown[0] is state and grown[1] == hashes:
            return grown[2]
        for h in hashes:
            if not isinstance(h, bytes) or len(h) != HASH_LEN:
                raise ValueError("leaf hashes must be 32-byte bytes")
        if state.size + len(hashes) > MAX_SIZE:
            raise ValueError("the log would exceed 2^64 - 1 leaves")
        growth = _grow(state, hashes)
        self._grown = (state, hashes, growth)
        return growth

    def preview(self, leaf_hashes: Sequence[bytes]) -> tuple[int, bytes]:
        """``(new_size, new_root)`` after appending ``leaf_hashes``; writes nothing."""
        growth = self._grow_checked(leaf_hashes)
        return growth.size, growth.root

    def stage(self, leaf_hashes: Sequence[bytes], batch: WriteBatch) -> tuple[int, bytes]:
        """Put every tile changed by appending ``leaf_hashes`` (leaf hashes
        included) and the new size into ``batch``; return ``(new_size, new_root)``.

        Nothing changes until the caller writes ``batch`` and then calls
        :meth:`applied` - if the write fails, this log still describes the
        store, so staging again from scratch is always correct.
        """
        old = self._state
        growth = self._grow_checked(leaf_hashes)
        tails = stage_tiles(old.tails, growth.runs, growth.size, batch)
        batch.put(schema.META_LOG_SIZE, schema.pack_u64(growth.size))
        self._pending = _Frontier(growth.size, growth.peaks, growth.root, tails)
        return growth.size, growth.root

    def applied(self, new_size: int) -> None:
        """The batch from :meth:`stage` is durable: adopt its frontier.

        One read confirms the store really holds ``new_size`` leaves, so a
        caller whose write failed cannot make this log run ahead of the store.
        """
        pending, self._pending = self._pending, None
        raw = self._store.get(schema.META_LOG_SIZE)
        stored = 0 if raw is None else schema.unpack_u64(raw, "log size")
        if stored != new_size:
            raise ValueError(f"applied({new_size}) but the stored log size is {stored}")
        if pending is not None and pending.size == new_size:
            self._adopt(pending)
        else:
            # Another handle appended: trust only the store.
            self._adopt(self._load())

