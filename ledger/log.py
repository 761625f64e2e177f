"""The persistent, append-only RFC 9162 log.

Every complete (perfect) subtree is stored once, keyed by ``(level, index)``:
node ``(l, i)`` is the MTH of leaves ``[i * 2^l, (i + 1) * 2^l)``, and level 0
holds the leaf hashes.  Nodes never change once written, so:

* the MTH of any RFC-shaped range (a left subtree, or a right part ending at
  some past size) is a right fold of at most ``log2 n`` stored nodes, which
  gives the root at any past size and every path in O(log n) reads;
* appending ``k`` leaves writes the ``~2k`` new nodes and touches only the
  "right frontier": the perfect subtrees ("peaks") of the current size, one
  per set bit.  That frontier is all this class keeps in memory, so memory is
  flat however large the log grows.

Path shapes are not re-derived here: :func:`ledger.merkle.inclusion_path_from`
and :func:`ledger.merkle.consistency_path_from` walk the RFC recursion and ask
:meth:`MerkleLog.subtree_hash` for each hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from . import schema
from .errors import StorageCorruption
from .merkle import (
    EMPTY_ROOT,
    HASH_LEN,
    NodeHash,
    SubtreeHash,
    consistency_path_from,
    inclusion_path_by_nodes,
    perfect_subtrees,
    split_point,
)
from .storage import KeyValueStore, WriteBatch

MAX_SIZE = 2**64 - 1
_sha256 = hashlib.sha256

Peaks = Mapping[tuple[int, int], bytes]


@dataclass(frozen=True)
class _Frontier:
    """A committed size with its peaks ``{(level, index): hash}`` and root.

    Immutable and swapped in one assignment, so a reader never sees the size
    of one state with the peaks of another.
    """

    size: int
    peaks: Peaks = field(repr=False)
    root: bytes = field(repr=False)


@dataclass(frozen=True)
class _Run:
    """Consecutive new nodes of one level: indexes ``first .. first+len-1``."""

    level: int
    first: int
    hashes: list[bytes]


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
    it = iter(nodes)
    return [_sha256(b"\x01" + left + right).digest() for left, right in zip(it, it, strict=False)]


def _grow(old: _Frontier, leaf_hashes: list[bytes]) -> tuple[list[_Run], _Frontier]:
    """All nodes completed by appending ``leaf_hashes``, and the new frontier.

    Works level by level so hashing runs in list comprehensions rather than
    per leaf: at level ``l`` the new nodes start at index ``old.size >> l``;
    when that index is odd its left sibling is the old peak at level ``l``.
    """
    runs: list[_Run] = []
    level, first, nodes = 0, old.size, leaf_hashes
    while nodes:
        runs.append(_Run(level, first, nodes))
        if first & 1:
            nodes = [old.peaks[(level, first - 1)], *nodes]
            first -= 1
        nodes = _pair_up(nodes)
        level, first = level + 1, first >> 1
    new_size = old.size + len(leaf_hashes)
    peaks = _new_peaks(old, runs, new_size)
    root = fold_peaks([peaks[pos] for pos in peak_positions(new_size)])
    return runs, _Frontier(new_size, peaks, root)


def _new_peaks(old: _Frontier, runs: list[_Run], new_size: int) -> dict[tuple[int, int], bytes]:
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


def _node_error(value: bytes | None, level: int, index: int) -> StorageCorruption:
    what = "is missing" if value is None else f"has {len(value)} bytes"
    return StorageCorruption(f"Merkle log node (level {level}, index {index}) {what}")


DEFAULT_NODE_CACHE = 1 << 16


def cache_min_level(size: int, capacity: int) -> int:
    """The lowest level whose nodes, with all above it, number at most
    ``capacity`` in a log of ``size`` leaves (about ``2 * size / 2^level``)."""
    level = 0
    while (2 * size) >> level > capacity:
        level += 1
    return level


class MerkleLog:
    """An RFC 9162 log over a :class:`~ledger.storage.KeyValueStore`.

    Nodes never change once written, so the upper levels of the tree - which
    every proof touches, one node per level - are kept in a cache bounded by
    ``node_cache`` entries: only levels whose whole population fits are
    cached, and the threshold rises as the log grows.  Memory stays fixed
    while a proof at a million leaves reads only the lowest few levels.
    """

    def __init__(self, store: KeyValueStore, *, node_cache: int = DEFAULT_NODE_CACHE) -> None:
        self._store = store
        self._cache_capacity = node_cache
        self._cache: dict[int, bytes] = {}
        self._state = self._load()
        self._cache_level = cache_min_level(self._state.size, node_cache)
        self._pending: _Frontier | None = None

    # ------------------------------------------------------------------ state

    def _load(self) -> _Frontier:
        raw = self._store.get(schema.META_LOG_SIZE)
        size = 0 if raw is None else schema.unpack_u64(raw, "log size")
        peaks = {pos: self._read_node(*pos) for pos in peak_positions(size)}
        root = fold_peaks([peaks[pos] for pos in peak_positions(size)])
        return _Frontier(size, peaks, root)

    def reload(self) -> None:
        """Re-read the size and frontier from the store (drops any staged state)."""
        self._state = self._load()
        self._pending = None
        self._cache.clear()
        self._cache_level = cache_min_level(self._state.size, self._cache_capacity)

    def _adopt(self, state: _Frontier) -> None:
        """Switch to a larger committed state; raise the cache threshold when
        the log has grown past what the cache may hold."""
        self._state = state
        level = cache_min_level(state.size, self._cache_capacity)
        if level != self._cache_level:
            self._cache_level = level
            self._cache = {k: v for k, v in self._cache.items() if k & 0xFF >= level}

    @property
    def size(self) -> int:
        return self._state.size

    # ------------------------------------------------------------------ reads

    def _read_node(self, level: int, index: int) -> bytes:
        value = self._store.get(schema.node_key(level, index))
        if value is None or len(value) != HASH_LEN:
            raise _node_error(value, level, index)
        return value

    def _node_reader(self, state: _Frontier) -> NodeHash:
        """A perfect-node accessor over one frontier snapshot.

        A closure with its lookups bound once: every proof calls it once per
        tree level, so attribute lookups would otherwise rival LevelDB's
        own cost.  Using one snapshot also keeps a proof consistent if an
        append lands while it is being built.  Current peaks cost nothing
        (so the current root is free); cached upper levels cost a dict read.
        """
        peaks, get, node_key = state.peaks, self._store.get, schema.node_key
        cache, min_level = self._cache, self._cache_level

        def node(level: int, index: int) -> bytes:
            value = peaks.get((level, index))
            if value is None and level >= min_level:
                slot = index << 8 | level
                value = cache.get(slot)
                if value is None:
                    value = get(node_key(level, index))
                    if value is not None and len(value) == HASH_LEN:
                        cache[slot] = value
            elif value is None:
                value = get(node_key(level, index))
            if value is None or len(value) != HASH_LEN:
                raise _node_error(value, level, index)
            return value

        return node

    def _reader(self, state: _Frontier) -> SubtreeHash:
        """An MTH accessor for any range, folding perfect nodes."""
        node = self._node_reader(state)

        def mth(lo: int, hi: int) -> bytes:
            n = hi - lo
            if n & (n - 1) == 0 and lo & (n - 1) == 0:
                level = n.bit_length() - 1
                return node(level, lo >> level)
            k = split_point(n)
            return _sha256(b"\x01" + mth(lo, lo + k) + mth(lo + k, hi)).digest()

        return mth

    def _mth(self, lo: int, hi: int) -> bytes:
        return self._reader(self._state)(lo, hi)

    def subtree_hash(self, lo: int, hi: int) -> bytes:
        """MTH of leaves ``[lo, hi)``.

        O(log n) reads whenever ``lo`` is a multiple of the largest power of
        two not above ``hi - lo`` - true of every range the RFC recursion
        asks for (roots, path siblings).  Other ranges are correct but cost
        up to ``hi - lo`` reads, since their tree shape shares no stored node.
        """
        if not 0 <= lo < hi <= self._state.size:
            raise ValueError(f"range [{lo}, {hi}) is not inside a log of {self._state.size}")
        return self._mth(lo, hi)

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self._state.size:
            raise ValueError(f"leaf {index} is not inside a log of {self._state.size}")
        return self._mth(index, index + 1)

    def root(self, size: int | None = None) -> bytes:
        """The root at ``size`` (default: now); any past size, O(log n) reads."""
        state = self._state
        if size is None or size == state.size:
            return state.root
        if not 0 <= size <= state.size:
            raise ValueError(f"size {size} is above the log size {state.size}")
        return EMPTY_ROOT if size == 0 else self._mth(0, size)

    def inclusion_path(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 PATH(index, D[size]); ``size`` defaults to the current size."""
        size = self._state.size if size is None else size
        if not 0 <= index < size <= self._state.size:
            raise ValueError(f"no inclusion path for leaf {index} in a tree of {size} "
                             f"(log size {self._state.size})")
        return inclusion_path_by_nodes(index, size, self._node_reader(self._state))

    def consistency_path(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 PROOF(old_size, D[new_size]); ``new_size`` defaults to now."""
        new_size = self._state.size if new_size is None else new_size
        if not 0 < old_size <= new_size <= self._state.size:
            raise ValueError(f"no consistency path from {old_size} to {new_size} "
                             f"(log size {self._state.size})")
        return consistency_path_from(old_size, new_size, self._reader(self._state))

    # ---------------------------------------------------------------- appends

    def _grow_checked(self, leaf_hashes: Sequence[bytes]) -> tuple[list[_Run], _Frontier]:
        hashes = list(leaf_hashes)
        for h in hashes:
            if not isinstance(h, bytes) or len(h) != HASH_LEN:
                raise ValueError("leaf hashes must be 32-byte bytes")
        if self._state.size + len(hashes) > MAX_SIZE:
            raise ValueError("the log would exceed 2^64 - 1 leaves")
        return _grow(self._state, hashes)

    def preview(self, leaf_hashes: Sequence[bytes]) -> tuple[int, bytes]:
        """``(new_size, new_root)`` after appending ``leaf_hashes``; writes nothing."""
        _, frontier = self._grow_checked(leaf_hashes)
        return frontier.size, frontier.root

    def stage(self, leaf_hashes: Sequence[bytes], batch: WriteBatch) -> tuple[int, bytes]:
        """Put every node completed by appending ``leaf_hashes`` (leaf hashes
        included) and the new size into ``batch``; return ``(new_size, new_root)``.

        Nothing changes until the caller writes ``batch`` and then calls
        :meth:`applied` - if the write fails, this log still describes the
        store, so staging again from scratch is always correct.
        """
        runs, frontier = self._grow_checked(leaf_hashes)
        for run in runs:
            batch.put_many(zip(schema.node_keys(run.level, run.first, len(run.hashes)), run.hashes))
        batch.put(schema.META_LOG_SIZE, schema.pack_u64(frontier.size))
        self._pending = frontier
        return frontier.size, frontier.root

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
