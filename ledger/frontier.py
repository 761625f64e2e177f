"""The right frontier of an RFC 9162 tree: O(log n) state to append and root.

A tree of ``n`` leaves is a sequence of perfect subtrees whose sizes are the
binary digits of ``n``, largest first.  Appending a leaf pushes a size-1
subtree and merges equal neighbours; the root folds them from the right.
Auditors use this to recompute ``log_root`` over a whole chain without
keeping any leaves; the node uses it to check fetched blocks.
"""

from __future__ import annotations

from typing import Iterable

from .merkle import EMPTY_ROOT, node_hash


class MerkleFrontier:
    __slots__ = ("_hashes", "_sizes", "size")

    def __init__(self) -> None:
        self._hashes: list[bytes] = []
        self._sizes: list[int] = []
        self.size = 0

    def append(self, leaf_hash: bytes) -> None:
        h, s = leaf_hash, 1
        while self._sizes and self._sizes[-1] == s:
            h = node_hash(self._hashes.pop(), h)
            s += self._sizes.pop()
        self._hashes.append(h)
        self._sizes.append(s)
        self.size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = node_hash(h, r)
        return r

    def copy(self) -> "MerkleFrontier":
        other = MerkleFrontier()
        other._hashes = list(self._hashes)
        other._sizes = list(self._sizes)
        other.size = self.size
        return other
