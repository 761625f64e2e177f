"""RFC 9162 §2.1 Merkle Tree Hash, inclusion and consistency proofs (SHA-256).

Small functions named after the RFC.  Path generation is written once over a
``subtree_hash(lo, hi)`` accessor (the MTH of leaves ``[lo, hi)``), so that the
in-memory functions here and the persistent log in :mod:`ledger.log` share
exactly the same algorithm.  Verifiers follow §2.1.3.2 and §2.1.4.2 to the
letter and raise; they never return ``False``.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterator, Sequence

from .crypto import digest_equal
from .encoding import H
from .errors import ConsistencyError, InclusionError
from .native import native

HASH_LEN = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

SubtreeHash = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """``H(0x00 || data)``: the hash of one leaf."""
    return H(LEAF_PREFIX + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """``H(0x01 || left || right)``: the hash of an interior node."""
    return H(NODE_PREFIX + left + right)


def split_point(n: int) -> int:
    """k: the largest power of two smaller than ``n`` (n > 1)."""
    if n < 2:
        raise ValueError("split_point needs n > 1")
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves; ``H("")`` for the empty tree."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _list_subtree(leaf_hashes)(0, len(leaf_hashes))


def _list_subtree(leaf_hashes: Sequence[bytes]) -> SubtreeHash:
    """A subtree accessor over an in-memory list, folding level by level."""

    def subtree(lo: int, hi: int) -> bytes:
        level = list(leaf_hashes[lo:hi])
        # Pairing left to right and carrying the odd one up computes the same
        # tree as the RFC's recursive split at the largest power of two.
        while len(level) > 1:
            if native is not None:
                nxt = native.pair_up(level)
            else:
                nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        return level[0]

    return subtree


# --------------------------------------------------------------------------
# Path generation (§2.1.3.1 PATH, §2.1.4.1 PROOF/SUBPROOF)
# --------------------------------------------------------------------------


def inclusion_path_from(index: int, size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """PATH(index, D[size]) using ``subtree_hash`` for the sibling hashes."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} outside a tree of {size} leaves")
    path: list[bytes] = []
    lo, hi = 0, size
    # Walk from the root down, collecting siblings; the RFC lists them leaf-first.
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index - lo < k:
            path.append(subtree_hash(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_hash(lo, lo + k))
            lo = lo + k
    path.reverse()
    return path


def consistency_path_from(old_size: int, new_size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """PROOF(old_size, D[new_size]) using ``subtree_hash``."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size}")
    path: list[bytes] = []
    m, lo, hi, complete = old_size, 0, new_size, True
    while m != hi - lo:
        k = split_point(hi - lo)
        if m <= k:
            path.append(subtree_hash(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_hash(lo, lo + k))
            m -= k
            lo = lo + k
            complete = False
    if not complete:
        path.append(subtree_hash(lo, hi))
    path.reverse()
    return path


NodeHash = Callable[[int, int], bytes]


def perfect_subtrees(size: int) -> list[tuple[int, int]]:
    """``(level, index)`` of the perfect subtrees a tree of ``size`` leaves
    splits into, left (largest) to right: one per set bit of ``size``."""
    return [
        (level, (size >> level) - 1)
        for level in range(size.bit_length() - 1, -1, -1)
        if size >> level & 1
    ]


def inclusion_path_by_nodes(index: int, size: int, node: NodeHash) -> list[bytes]:
    """PATH(index, D[size]) read off perfect nodes, without recursion.

    Unrolling the RFC recursion gives: the siblings inside the perfect
    subtree holding the leaf (bottom up), then the MTH of the perfect
    subtrees to its right (one hash), then each perfect subtree to its left
    (nearest first).  ``node(level, i)`` is the MTH of leaves
    ``[i * 2^level, (i + 1) * 2^level)``.  Same output as
    :func:`inclusion_path_from`, for stores that keep every perfect node.
    """
    if not 0 <= index < size:
        raise ValueError(f"index {index} outside a tree of {size} leaves")
    peaks = perfect_subtrees(size)
    start = 0
    for j, (level, _) in enumerate(peaks):
        if index < start + (1 << level):
            break
        start += 1 << level
    path = [node(lvl, (index >> lvl) ^ 1) for lvl in range(level)]
    right = [node(lvl, i) for lvl, i in peaks[j + 1 :]]
    if right:
        acc = right[-1]
        for h in reversed(right[:-1]):
            acc = node_hash(h, acc)
        path.append(acc)
    path.extend(node(lvl, i) for lvl, i in reversed(peaks[:j]))
    return path


def inclusion_path(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The RFC 9162 inclusion path of leaf ``index`` in the tree of ``leaf_hashes``."""
    return inclusion_path_from(index, len(leaf_hashes), _list_subtree(leaf_hashes))


def consistency_path(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The RFC 9162 consistency path from ``old_size`` to ``len(leaf_hashes)``."""
    return consistency_path_from(old_size, len(leaf_hashes), _list_subtree(leaf_hashes))


# --------------------------------------------------------------------------
# Verification (§2.1.3.2, §2.1.4.2)
# --------------------------------------------------------------------------


def _check_hashes(path: Sequence[bytes], error: type[Exception]) -> None:
    for item in path:
        if not isinstance(item, (bytes, bytearray)) or len(item) != HASH_LEN:
            raise error("path entries must be 32-byte hashes")


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, path: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise :class:`InclusionError` unless ``path`` proves
    ``leaf_hash`` at ``index`` in the tree of ``size`` leaves with ``root``."""
    r = inclusion_root(index, size, leaf_hash, path)
    if not digest_equal(r, root):
        raise InclusionError("computed root does not match the expected root")


def inclusion_root(index: int, size: int, leaf_hash: bytes, path: Sequence[bytes]) -> bytes:
    """The root that ``path`` leads to from ``leaf_hash`` at ``index`` in a
    tree of ``size`` leaves (RFC 9162 §2.1.3.2 without the final comparison);
    :class:`InclusionError` if the path's length does not fit index and size."""
    _check_hashes(path, InclusionError)
    if index < 0 or index >= size:
        raise InclusionError(f"leaf index {index} is not below tree size {size}")
    sn, r = size - 1, bytes(leaf_hash)
    for _, sn, r in inclusion_steps(index, size, r, path):
        pass
    if sn != 0:
        raise InclusionError("inclusion path is too short")
    return r


def inclusion_steps(index: int, size: int, leaf_hash: bytes,
                    path: Sequence[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """RFC 9162 §2.1.3.2's walk, one ``(fn, sn, r)`` after each path entry
    (the caller checks index, size and entries first, and ``sn == 0`` at the
    end: :func:`inclusion_root`); :class:`InclusionError` when the path is
    longer than the tree is deep.  Step by step so that a caller may stop
    where an earlier walk of the same tree already went on
    (:func:`ledger.batch.batch_roots`)."""
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            raise InclusionError("inclusion path is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
        yield fn, sn, r


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise :class:`ConsistencyError` unless ``path``
    proves the tree of ``old_size`` leaves is a prefix of the one of ``new_size``."""
    _check_hashes(path, ConsistencyError)
    if old_size < 1:
        raise ConsistencyError("a consistency proof from size 0 is not accepted")
    if old_size > new_size:
        raise ConsistencyError(f"old size {old_size} is above new size {new_size}")
    if old_size == new_size:
        if path:
            raise ConsistencyError("equal sizes take an empty path")
        if not digest_equal(old_root, new_root):
            raise ConsistencyError("equal sizes but different roots")
        return
    if not path:
        raise ConsistencyError("consistency path is empty")
    items = list(path)
    if old_size & (old_size - 1) == 0:  # exact power of two
        items.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = items[0]
    for c in items[1:]:
        if sn == 0:
            raise ConsistencyError("consistency path is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ConsistencyError("consistency path is too short")
    if not digest_equal(fr, old_root):
        raise ConsistencyError("path does not reproduce the old root")
    if not digest_equal(sr, new_root):
        raise ConsistencyError("path does not reproduce the new root")
