"""Signed batches (PROTOCOL §2, "Batch envelopes"): the bytes a batch
signature covers, and a record's place in its batch.

A submitter signs once for a batch of records: the signature covers the
RFC 9162 root over the batch's record ids (leaf ``H(0x00 || id)``, so a
record id can never pose as an interior node), and each record's envelope
carries that signature with the record's inclusion path to the root.  The
path is recomputed for every envelope; only the signature over a root is
what a verifier may check once for many envelopes.

This module knows nothing of envelopes (``ledger.records`` builds on it):
it parses the ``batch`` map and computes roots and signed messages.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import BadEncoding, InclusionError
from .merkle import (
    HASH_LEN,
    inclusion_path_by_nodes,
    inclusion_root,
    inclusion_steps,
    leaf_hash,
    node_hash,
    root,
)

BATCH_DOMAIN = b"auditledger/batch/v1\n"
BATCH_KEYS = frozenset({"index", "path", "size"})
# A batch of one is an ordinary signed record (§2); the upper bound keeps a
# path at most 12 hashes (about 400 bytes of an 8 KiB envelope).
MIN_BATCH_SIZE = 2
MAX_BATCH_SIZE = 4096
MAX_PATH_LEN = (MAX_BATCH_SIZE - 1).bit_length()


@dataclass(frozen=True, slots=True)
class BatchPosition:
    """A record's place in a signed batch: leaf ``index`` of ``size``, and
    the RFC 9162 inclusion ``path`` of its leaf to the batch root."""

    index: int
    size: int
    path: tuple[bytes, ...]

    def to_map(self) -> dict[str, Any]:
        """The envelope's ``batch`` value (PROTOCOL §2)."""
        return {"index": self.index, "path": list(self.path), "size": self.size}


def parse_batch(value: Any) -> BatchPosition:
    """The ``batch`` map of an envelope, its form checked (not its path's fit:
    that is verification, :func:`batch_root`)."""
    if type(value) is not dict or value.keys() != BATCH_KEYS:
        raise BadEncoding("envelope 'batch' must be a map of exactly 'index', 'path' and 'size'")
    index, size, path = value["index"], value["size"], value["path"]
    if type(size) is not int or not MIN_BATCH_SIZE <= size <= MAX_BATCH_SIZE:
        raise BadEncoding(f"batch 'size' must be an integer in {MIN_BATCH_SIZE}..{MAX_BATCH_SIZE}")
    if type(index) is not int or not 0 <= index < size:
        raise BadEncoding("batch 'index' must be an integer below 'size'")
    if type(path) is not list or not 1 <= len(path) <= MAX_PATH_LEN:
        raise BadEncoding(f"batch 'path' must be a list of 1..{MAX_PATH_LEN} hashes")
    for item in path:
        if type(item) is not bytes or len(item) != HASH_LEN:
            raise BadEncoding("each batch 'path' entry must be 32 bytes")
    return BatchPosition(index, size, tuple(path))


def batch_leaf(record_id: bytes) -> bytes:
    """A record's leaf in its batch tree: ``H(0x00 || record id)``."""
    return leaf_hash(record_id)


def batch_root(record_id: bytes, position: BatchPosition) -> bytes:
    """The batch root the record's path leads to; :class:`InclusionError`
    if the path's length does not fit its index and size."""
    return inclusion_root(position.index, position.size, batch_leaf(record_id), position.path)


# A node of a batch tree reached while walking a path up: (tree size, the
# walk's fn and sn after the step, the node's hash) -> (the rest of the path
# from there, the root it led to).  See :func:`batch_roots`.
RootMemo = dict[tuple[int, int, int, bytes], tuple[tuple[bytes, ...], bytes]]


def batch_roots(items: Sequence[tuple[bytes, BatchPosition]]) -> list[bytes | None]:
    """:func:`batch_root` of each ``(record id, position)``, None where the
    path does not fit its index and size; the same answers, computed with
    the work shared between paths of one tree.

    Records of a batch arrive together, and their paths climb through the
    same nodes: sibling leaves meet after one hash.  Each walk remembers
    every node it reached with the rest of its path and the root that rest
    led to; a later walk that reaches a node with the same hash at the same
    place (tree size, and the RFC 9162 walk's ``fn``, ``sn``) and holds the
    same rest of path would compute the same root from there, so it stops.
    Nothing is trusted that the walk would not recompute: the node's hash is
    this record's own, and its remaining path entries are compared byte for
    byte.  A batch of 64 costs about two hashes per record instead of seven.
    """
    memo: RootMemo = {}
    out: list[bytes | None] = []
    for record_id, position in items:
        try:
            out.append(_shared_root(record_id, position, memo))
        except InclusionError:
            out.append(None)
    return out


def _shared_root(record_id: bytes, position: BatchPosition, memo: RootMemo) -> bytes:
    """:func:`ledger.merkle.inclusion_root` for a parsed position (entries
    of 32 bytes, index below size: :func:`parse_batch`), through ``memo``."""
    size, path = position.size, position.path
    sn, r = size - 1, batch_leaf(record_id)
    reached: list[tuple[tuple[int, int, int, bytes], int]] = []
    root = None
    for k, (fn, sn, r) in enumerate(inclusion_steps(position.index, size, r, path)):
        key = (size, fn, sn, r)
        hit = memo.get(key)
        if hit is not None and hit[0] == path[k + 1:]:
            root = hit[1]
            break
        reached.append((key, k + 1))
    if root is None:
        if sn != 0:
            raise InclusionError("inclusion path is too short")
        root = r
    for key, k in reached:
        memo[key] = (path[k:], root)
    return root


def batch_message(size: int, batch_root_hash: bytes) -> bytes:
    """What a batch signature signs, after :data:`BATCH_DOMAIN`:
    ``uint64 big-endian size || root``."""
    return size.to_bytes(8, "big") + batch_root_hash


def batch_tree(record_ids: Sequence[bytes]) -> tuple[bytes, list[BatchPosition]]:
    """The root over ``record_ids`` (in order) and each record's position."""
    size = len(record_ids)
    if not MIN_BATCH_SIZE <= size <= MAX_BATCH_SIZE:
        raise ValueError(f"a batch holds {MIN_BATCH_SIZE}..{MAX_BATCH_SIZE} records, not {size}")
    leaves = [batch_leaf(i) for i in record_ids]
    # Every perfect subtree's hash, level by level, once: each path is then
    # read off them (a path per leaf from the leaves would be quadratic).
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[j], below[j + 1]) for j in range(0, len(below) - 1, 2)])

    def node(level: int, i: int) -> bytes:
        return levels[level][i]

    return root(leaves), [
        BatchPosition(i, size, tuple(inclusion_path_by_nodes(i, size, node)))
        for i in range(size)]


# canonical({"batch": {"index": i, "path": [...], "size": n}, "record": r,
# "sig": s}) byte by byte: fixed key strings, the shortest integer and bin
# headers.  The Python reference of ledger/_native_batch.c and the path
# without the C module: it reads the canonical ones at a fraction of the
# general decoder's cost (every validator decodes every record it admits)
# and answers None for anything else, which the general path then decides.
# A canonical unsigned integer below 2^16: a positive fixint, 0xCC with a
# byte of at least 0x80, or 0xCD with two bytes (whose value must exceed
# 0xFF: checked after the match).
_UINT16 = rb"(?:([\x00-\x7f])|\xcc([\x80-\xff])|\xcd(..))"
_HEAD = re.compile(rb"\x83\xa5batch\x83\xa5index" + _UINT16 + rb"\xa4path([\x91-\x9f])", re.DOTALL)
_TAIL = re.compile(rb"\xa4size" + _UINT16 + rb"\xa6record(?:\xc4(.)|\xc5(..))", re.DOTALL)
_SIG_PART = b"\xa3sig\xc4\x40"
_HASH_ITEM = 2 + HASH_LEN  # b"\xc4\x20" and the hash


# Per path length: the bin 8 headers its entries must have (every
# _HASH_ITEM-th byte from the first, and from the second), and the layout
# that slices its 32-byte entries out in one call.
_PATH_MARKS = [(b"\xc4" * n, b"\x20" * n) for n in range(16)]
_PATH_ENTRIES = [struct.Struct("2x32s" * n) for n in range(16)]


def _uint16(fix: bytes | None, u8: bytes | None, u16: bytes | None) -> int | None:
    if fix is not None:
        return fix[0]
    if u8 is not None:
        return u8[0]
    assert u16 is not None
    value = int.from_bytes(u16, "big")
    return value if value > 0xFF else None


def canonical_batch_parts(data: bytes, max_size: int
                          ) -> tuple[BatchPosition, bytes, bytes] | None:
    """``(position, record_bytes, sig)`` if ``data`` is byte for byte the
    canonical batch envelope of a well-formed ``batch`` map, else None.
    (Two regular-expression matches, slices, and the path's entries cut
    out in one ``struct`` call: every validator calls this once per
    batched record it admits.)"""
    if len(data) > max_size:
        return None
    head = _HEAD.match(data)
    if head is None:
        return None
    fix, u8, u16, length = head.groups()
    index = fix[0] if fix is not None else u8[0] if u8 is not None else _uint16(None, None, u16)
    count = length[0] - 0x90
    if index is None or count > MAX_PATH_LEN:
        return None
    at = head.end()
    end = at + count * _HASH_ITEM
    marks = _PATH_MARKS[count]
    # Short data gives short slices, so these also refuse a cut-off path.
    if data[at:end:_HASH_ITEM] != marks[0] or data[at + 1:end:_HASH_ITEM] != marks[1]:
        return None
    tail = _TAIL.match(data, end)
    if tail is None:
        return None
    fix, u8, u16, n8, n16 = tail.groups()
    size = fix[0] if fix is not None else u8[0] if u8 is not None else _uint16(None, None, u16)
    if size is None or not (MIN_BATCH_SIZE <= size <= MAX_BATCH_SIZE and index < size):
        return None
    if n8 is not None:
        n = n8[0]
    else:
        n = int.from_bytes(n16, "big")
        if n <= 0xFF:
            return None
    at_record = tail.end()
    stop = at_record + n
    if len(data) != stop + len(_SIG_PART) + 64 or data[stop:stop + len(_SIG_PART)] != _SIG_PART:
        return None
    path: tuple[bytes, ...] = _PATH_ENTRIES[count].unpack_from(data, at)
    return (BatchPosition(index, size, path), data[at_record:stop],
            data[stop + len(_SIG_PART):])
