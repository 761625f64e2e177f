"""RFC 6962 / RFC 9162 Merkle trees: known vectors, an independent oracle
(pymerkle), a from-the-RFC recursive reference, and properties of every proof.

Known answers are the certificate-transparency golden tree (8 leaves) as
published in transparency-dev/merkle (testonly/constants.go and
proof/verify_test.go).  Everything is deterministic: fixed seeds and
``derandomize=True``.
"""

from __future__ import annotations

import hashlib
import random
from typing import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from ledger import merkle
from ledger.errors import ConsistencyError, InclusionError, VerificationError
from ledger.merkle import (
    EMPTY_ROOT,
    consistency_path,
    inclusion_path,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

PROPS = settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --------------------------------------------------------------------------
# The CT golden tree
# --------------------------------------------------------------------------

LEAVES = [h(x) for x in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]

# Roots for every prefix size 0..8.
ROOTS = [h(x) for x in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]

# Every complete subtree of the 8-leaf tree: NODES[level][index].
NODES = [
    [h(x) for x in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    )],
    [h(x) for x in (
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    )],
    [h(x) for x in (
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    )],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# (leaf index, tree size, path) from the CT suite (which counts leaves from 1).
INCLUSION_VECTORS = [
    (0, 1, []),
    (0, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]

# (old size, new size, path) from the CT suite.
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (1, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]


def _n(level: int, index: int) -> bytes:
    return NODES[level][index]


# Structural vectors from transparency-dev/merkle proof/proof_test.go, written
# with the golden tree's node hashes; "l7" is the size-7 right subtree
# H(i, j) = node_hash(NODES[1][2], NODES[0][6]), which the suite rehashes.
_L7 = node_hash(_n(1, 2), _n(0, 6))
STRUCTURAL_INCLUSION = [
    (0, 2, [_n(0, 1)]),
    (1, 2, [_n(0, 0)]),
    (1, 3, [_n(0, 0), _n(0, 2)]),
    (0, 7, [_n(0, 1), _n(1, 1), _L7]),
    (1, 7, [_n(0, 0), _n(1, 1), _L7]),
    (2, 7, [_n(0, 3), _n(1, 0), _L7]),
    (3, 7, [_n(0, 2), _n(1, 0), _L7]),
    (4, 7, [_n(0, 5), _n(0, 6), _n(2, 0)]),
    (5, 7, [_n(0, 4), _n(0, 6), _n(2, 0)]),
    (6, 7, [_n(1, 2), _n(2, 0)]),
    (2, 4, [_n(0, 3), _n(1, 0)]),
    (3, 5, [_n(0, 2), _n(1, 0), _n(0, 4)]),
    (3, 6, [_n(0, 2), _n(1, 0), _n(1, 2)]),
    (4, 6, [_n(0, 5), _n(2, 0)]),
]
STRUCTURAL_CONSISTENCY = [
    (1, 2, [_n(0, 1)]),
    (1, 4, [_n(0, 1), _n(1, 1)]),
    (1, 6, [_n(0, 1), _n(1, 1), _n(1, 2)]),
    (2, 3, [_n(0, 2)]),
    (2, 8, [_n(1, 1), _n(2, 1)]),
    (3, 7, [_n(0, 2), _n(0, 3), _n(1, 0), _L7]),
    (4, 7, [_L7]),
    (5, 7, [_n(0, 4), _n(0, 5), _n(0, 6), _n(2, 0)]),
    (6, 7, [_n(1, 2), _n(0, 6), _n(2, 0)]),
    (7, 8, [_n(0, 6), _n(0, 7), _n(1, 2), _n(2, 0)]),
    (2, 4, [_n(1, 1)]),
    (3, 5, [_n(0, 2), _n(0, 3), _n(1, 0), _n(0, 4)]),
    (3, 6, [_n(0, 2), _n(0, 3), _n(1, 0), _n(1, 2)]),
    (4, 6, [_n(1, 2)]),
    (1, 7, [_n(0, 1), _n(1, 1), _L7]),
]

GOLDEN_HASHES = [leaf_hash(d) for d in LEAVES]


# --------------------------------------------------------------------------
# A reference written straight from the RFC's recursive definitions
# (RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1), over raw leaf data.
# --------------------------------------------------------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


def flip(data: bytes, bit: int) -> bytes:
    """``data`` with one bit flipped (bit counted from the first byte's LSB)."""
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def distinct_leaves(seed: int, n: int) -> list[bytes]:
    """``n`` pairwise distinct leaf inputs of random length, from a fixed seed."""
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(0, 48)) + i.to_bytes(4, "big") for i in range(n)]


# --------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT == ROOTS[0]
    assert root([]) == h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest() == NODES[0][0]
    a, b = NODES[0][0], NODES[0][1]
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest() == NODES[1][0]


@pytest.mark.parametrize("size", range(0, 9))
def test_golden_roots_for_every_prefix(size: int) -> None:
    assert root(GOLDEN_HASHES[:size]) == ROOTS[size]
    assert ref_mth(LEAVES[:size]) == ROOTS[size]


def test_golden_complete_subtrees() -> None:
    for level, row in enumerate(NODES):
        width = 1 << level
        for i, expected in enumerate(row):
            assert root(GOLDEN_HASHES[i * width:(i + 1) * width]) == expected


@pytest.mark.parametrize("index,size,path", INCLUSION_VECTORS + STRUCTURAL_INCLUSION)
def test_golden_inclusion_paths(index: int, size: int, path: list[bytes]) -> None:
    assert inclusion_path(index, GOLDEN_HASHES[:size]) == path
    verify_inclusion(index, size, GOLDEN_HASHES[index], path, ROOTS[size])


@pytest.mark.parametrize("old,new,path", CONSISTENCY_VECTORS + STRUCTURAL_CONSISTENCY)
def test_golden_consistency_paths(old: int, new: int, path: list[bytes]) -> None:
    assert consistency_path(old, GOLDEN_HASHES[:new]) == path
    verify_consistency(old, new, ROOTS[old], ROOTS[new], path)


def test_golden_every_proof_matches_the_rfc_reference() -> None:
    for size in range(1, 9):
        for index in range(size):
            path = inclusion_path(index, GOLDEN_HASHES[:size])
            assert path == ref_path(index, LEAVES[:size])
            verify_inclusion(index, size, GOLDEN_HASHES[index], path, ROOTS[size])
        for old in range(1, size + 1):
            path = consistency_path(old, GOLDEN_HASHES[:size])
            assert path == ref_proof(old, LEAVES[:size])
            verify_consistency(old, size, ROOTS[old], ROOTS[size], path)


def _inclusion_probes(
    index: int, size: int, path: list[bytes], rt: bytes, lh: bytes
) -> list[tuple[str, int, int, bytes, list[bytes], bytes]]:
    """The CT suite's corruptions of a valid inclusion proof."""
    some = h("abacaba000000000000000000000000000000000000000000060061e00123456")
    probes = [
        ("index-1", index - 1, size, lh, path, rt),
        ("index+1", index + 1, size, lh, path, rt),
        ("index^2", index ^ 2, size, lh, path, rt),
        ("size*2", index, size * 2, lh, path, rt),
        ("size/2", index, size // 2, lh, path, rt),
        ("wrong leaf", index, size, b"WrongLeaf", path, rt),
        ("empty root", index, size, lh, path, EMPTY_ROOT),
        ("random root", index, size, lh, path, some),
        ("trailing root", index, size, lh, path + [rt], rt),
        ("preceding root", index, size, lh, [rt] + path, rt),
    ]
    for i in range(len(path)):
        probes.append((f"proof[{i}] bit 3", index, size, lh,
                       path[:i] + [flip(path[i], 3)] + path[i + 1:], rt))
    if path:
        probes.append(("removed component", index, size, lh, path[:-1], rt))
    if len(path) > 1:
        probes.append(("inserted component", index, size, lh, [path[0], some] + path[1:], rt))
    return probes


@pytest.mark.parametrize("index,size,path", INCLUSION_VECTORS[1:])
def test_golden_inclusion_corruptions_fail(index: int, size: int, path: list[bytes]) -> None:
    for desc, i, s, lh, p, rt in _inclusion_probes(index, size, path, ROOTS[size],
                                                   GOLDEN_HASHES[index]):
        with pytest.raises(InclusionError):
            verify_inclusion(i, s, lh, p, rt)
            pytest.fail(f"accepted: {desc}")


@pytest.mark.parametrize("old,new,path", CONSISTENCY_VECTORS[1:])
def test_golden_consistency_corruptions_fail(old: int, new: int, path: list[bytes]) -> None:
    r1, r2 = ROOTS[old], ROOTS[new]
    probes = [
        ("old-1", old - 1, new, r1, r2, path),
        ("old+1", old + 1, new, r1, r2, path),
        ("old^2", old ^ 2, new, r1, r2, path),
        ("new*2", old, new * 2, r1, r2, path),
        ("new/2", old, new // 2, r1, r2, path),
        ("wrong root1", old, new, b"WrongRoot", r2, path),
        ("wrong root2", old, new, r1, b"WrongRoot", path),
        ("swapped roots", old, new, r2, r1, path),
        ("empty proof", old, new, r1, r2, []),
        ("trailing root1", old, new, r1, r2, path + [r1]),
        ("trailing root2", old, new, r1, r2, path + [r2]),
        ("preceding root1", old, new, r1, r2, [r1] + path),
        ("preceding root2", old, new, r1, r2, [r2] + path),
        ("preceding proof[0]", old, new, r1, r2, [path[0]] + path),
        ("truncated", old, new, r1, r2, path[:-1]),
    ]
    for i in range(len(path)):
        probes.append((f"proof[{i}] bit 4", old, new, r1, r2,
                       path[:i] + [flip(path[i], 4)] + path[i + 1:]))
    for desc, o, n, a, b, p in probes:
        with pytest.raises(ConsistencyError):
            verify_consistency(o, n, a, b, p)
            pytest.fail(f"accepted: {desc}")


def test_single_leaf_tree() -> None:
    lh = leaf_hash(b"data")
    verify_inclusion(0, 1, lh, [], lh)
    with pytest.raises(InclusionError):
        verify_inclusion(0, 1, lh, [], b"")
    with pytest.raises(InclusionError):
        verify_inclusion(0, 1, b"", [], lh)


@pytest.mark.parametrize("index,size", [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 4), (8, 8)])
def test_inclusion_index_outside_tree_rejected(index: int, size: int) -> None:
    with pytest.raises(InclusionError):
        verify_inclusion(index, size, GOLDEN_HASHES[0], [], ROOTS[1])


def test_consistency_edge_cases() -> None:
    # From size 0: rejected (PROTOCOL §3), whatever the path and roots.
    for path in ([], [EMPTY_ROOT]):
        with pytest.raises(ConsistencyError, match="size 0"):
            verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, path)
        with pytest.raises(ConsistencyError, match="size 0"):
            verify_consistency(0, 3, EMPTY_ROOT, ROOTS[3], path)
    # Old above new.
    with pytest.raises(ConsistencyError, match="above"):
        verify_consistency(2, 1, ROOTS[2], ROOTS[1], [])
    # Equal sizes: the empty path, and equal roots.
    verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
    with pytest.raises(ConsistencyError):
        verify_consistency(3, 3, ROOTS[3], ROOTS[3], [ROOTS[3]])
    with pytest.raises(ConsistencyError):
        verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    # Different sizes need a path.
    with pytest.raises(ConsistencyError):
        verify_consistency(1, 2, ROOTS[1], ROOTS[2], [])


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 32])
def test_malformed_path_entries_rejected(bad: object) -> None:
    path = list(INCLUSION_VECTORS[1][2])
    with pytest.raises(InclusionError, match="32-byte"):
        verify_inclusion(0, 8, GOLDEN_HASHES[0], path[:1] + [bad] + path[2:], ROOTS[8])  # type: ignore[list-item]
    cpath = list(CONSISTENCY_VECTORS[2][2])
    with pytest.raises(ConsistencyError, match="32-byte"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[8], cpath[:1] + [bad] + cpath[2:])  # type: ignore[list-item]


def test_path_generation_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        inclusion_path(0, [])
    with pytest.raises(ValueError):
        inclusion_path(3, GOLDEN_HASHES[:3])
    with pytest.raises(ValueError):
        consistency_path(0, GOLDEN_HASHES[:3])
    with pytest.raises(ValueError):
        consistency_path(4, GOLDEN_HASHES[:3])
    assert consistency_path(3, GOLDEN_HASHES[:3]) == []


# --------------------------------------------------------------------------
# pymerkle as an independent oracle
# --------------------------------------------------------------------------


def _pymerkle_tree(leaves: Sequence[bytes]) -> InmemoryTree:
    tree = InmemoryTree(algorithm="sha256")
    for data in leaves:
        tree.append_entry(data)
    return tree


def test_pymerkle_hashes_raw_data_like_rfc9162() -> None:
    tree = _pymerkle_tree(LEAVES)
    for i, data in enumerate(LEAVES):
        assert tree.get_leaf(i + 1) == leaf_hash(data) == GOLDEN_HASHES[i]
    assert tree.hash_pair(NODES[0][0], NODES[0][1]) == node_hash(NODES[0][0], NODES[0][1])
    for size in range(0, 9):
        assert tree.get_root(size) == ROOTS[size]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pymerkle_oracle_on_random_sizes(seed: int) -> None:
    rng = random.Random(seed)
    leaves = distinct_leaves(seed, 300)
    tree = _pymerkle_tree(leaves)
    hashes = [leaf_hash(d) for d in leaves]
    for size in sorted(rng.sample(range(1, 301), 25)):
        assert root(hashes[:size]) == tree.get_root(size)
        for index in rng.sample(range(size), min(size, 6)):
            ours = inclusion_path(index, hashes[:size])
            theirs = tree.prove_inclusion(index + 1, size)
            # pymerkle's path starts with the leaf hash, then the RFC 9162 path.
            assert theirs.path[0] == hashes[index]
            assert list(theirs.path[1:]) == ours
            verify_inclusion(index, size, hashes[index], ours, tree.get_root(size))
        for old in rng.sample(range(1, size + 1), min(size, 6)):
            # pymerkle lays consistency proofs out its own way; it must
            # accept the roots we compute, and we must accept our path.
            theirs_c = tree.prove_consistency(old, size)
            theirs_c.verify(root(hashes[:old]), root(hashes[:size]))
            ours_c = consistency_path(old, hashes[:size])
            verify_consistency(old, size, root(hashes[:old]), root(hashes[:size]), ours_c)


def test_matches_rfc_reference_on_every_small_tree() -> None:
    leaves = distinct_leaves(7, 40)
    hashes = [leaf_hash(d) for d in leaves]
    for size in range(1, 41):
        assert root(hashes[:size]) == ref_mth(leaves[:size])
        for index in range(size):
            assert inclusion_path(index, hashes[:size]) == ref_path(index, leaves[:size])
        for old in range(1, size + 1):
            assert consistency_path(old, hashes[:size]) == ref_proof(old, leaves[:size])


# --------------------------------------------------------------------------
# Properties of inclusion proofs
# --------------------------------------------------------------------------

MAX_LEAVES = 70
TREE = distinct_leaves(2024, MAX_LEAVES)
TREE_HASHES = [leaf_hash(d) for d in TREE]
TREE_ROOTS = [root(TREE_HASHES[:n]) for n in range(MAX_LEAVES + 1)]


@st.composite
def inclusion_case(draw: st.DrawFn) -> tuple[int, int, list[bytes]]:
    size = draw(st.integers(1, MAX_LEAVES))
    index = draw(st.integers(0, size - 1))
    return index, size, inclusion_path(index, TREE_HASHES[:size])


@PROPS
@given(inclusion_case())
def test_prop_valid_inclusion_verifies(case: tuple[int, int, list[bytes]]) -> None:
    index, size, path = case
    verify_inclusion(index, size, TREE_HASHES[index], path, TREE_ROOTS[size])


@PROPS
@given(inclusion_case(), st.data())
def test_prop_inclusion_any_flipped_bit_fails(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    index, size, path = case
    lh, rt = TREE_HASHES[index], TREE_ROOTS[size]
    bit = data.draw(st.integers(0, 255))
    target = data.draw(st.sampled_from(["leaf", "root"] + ["path"] * len(path)))
    if target == "leaf":
        lh = flip(lh, bit)
    elif target == "root":
        rt = flip(rt, bit)
    else:
        i = data.draw(st.integers(0, len(path) - 1))
        path = path[:i] + [flip(path[i], bit)] + path[i + 1:]
    with pytest.raises(InclusionError):
        verify_inclusion(index, size, lh, path, rt)


@PROPS
@given(inclusion_case(), st.data())
def test_prop_inclusion_truncated_or_extended_path_fails(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    index, size, path = case
    # The path's length is fixed by (index, size): §2.1.3.2 rejects any other
    # length before comparing roots, whatever the extra entries are.
    if path and data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(path) - 1))
        bad, why = path[:cut], "too short"
    else:
        extra = data.draw(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=3))
        at = data.draw(st.integers(0, len(path)))
        bad, why = path[:at] + extra + path[at:], "too long"
    with pytest.raises(InclusionError, match=why):
        verify_inclusion(index, size, TREE_HASHES[index], bad, TREE_ROOTS[size])


@PROPS
@given(inclusion_case(), st.data())
def test_prop_inclusion_wrong_index_fails(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    index, size, path = case
    other = data.draw(st.integers(-2, size + 2).filter(lambda j: j != index))
    with pytest.raises(InclusionError):
        verify_inclusion(other, size, TREE_HASHES[index], path, TREE_ROOTS[size])


@PROPS
@given(inclusion_case(), st.data())
def test_prop_inclusion_wrong_size_fails(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    index, size, path = case
    other = data.draw(st.integers(0, MAX_LEAVES).filter(lambda s: s != size))
    # Against the genuine root of the claimed size: a proof for one tree
    # never passes for another.
    with pytest.raises(InclusionError):
        verify_inclusion(index, other, TREE_HASHES[index], path, TREE_ROOTS[other])
    # Against the original root, a claimed size whose path has another
    # length is rejected by the path-length rule of §2.1.3.2.  (A size with
    # the same path shape computes the same root: the size is bound by the
    # signed header, not by the path.)
    if other == 0 or index >= other or len(ref_path(index, TREE[:other])) != len(path):
        with pytest.raises(InclusionError):
            verify_inclusion(index, other, TREE_HASHES[index], path, TREE_ROOTS[size])


# --------------------------------------------------------------------------
# Properties of consistency proofs
# --------------------------------------------------------------------------


@st.composite
def consistency_case(draw: st.DrawFn) -> tuple[int, int, list[bytes]]:
    new = draw(st.integers(1, MAX_LEAVES))
    old = draw(st.integers(1, new))
    return old, new, consistency_path(old, TREE_HASHES[:new])


@PROPS
@given(consistency_case())
def test_prop_valid_consistency_verifies(case: tuple[int, int, list[bytes]]) -> None:
    old, new, path = case
    assert (path == []) == (old == new)
    verify_consistency(old, new, TREE_ROOTS[old], TREE_ROOTS[new], path)


@PROPS
@given(consistency_case().filter(lambda c: c[0] < c[1]), st.data())
def test_prop_consistency_any_flipped_bit_fails(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    old, new, path = case
    r1, r2 = TREE_ROOTS[old], TREE_ROOTS[new]
    bit = data.draw(st.integers(0, 255))
    target = data.draw(st.sampled_from(["old", "new"] + ["path"] * len(path)))
    if target == "old":
        r1 = flip(r1, bit)
    elif target == "new":
        r2 = flip(r2, bit)
    else:
        i = data.draw(st.integers(0, len(path) - 1))
        path = path[:i] + [flip(path[i], bit)] + path[i + 1:]
    with pytest.raises(ConsistencyError):
        verify_consistency(old, new, r1, r2, path)


@PROPS
@given(consistency_case(), st.data())
def test_prop_consistency_truncated_or_extended_path_fails(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    old, new, path = case
    if path and data.draw(st.booleans()):
        bad = path[: data.draw(st.integers(0, len(path) - 1))]
    else:
        extra = data.draw(st.lists(st.sampled_from(TREE_ROOTS[1:] + TREE_HASHES),
                                   min_size=1, max_size=3))
        at = data.draw(st.integers(0, len(path)))
        bad = path[:at] + extra + path[at:]
    with pytest.raises(ConsistencyError):
        verify_consistency(old, new, TREE_ROOTS[old], TREE_ROOTS[new], bad)


@PROPS
@given(consistency_case(), st.data())
def test_prop_consistency_wrong_sizes_fail(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    old, new, path = case
    old2 = data.draw(st.integers(0, MAX_LEAVES))
    new2 = data.draw(st.integers(0, MAX_LEAVES))
    if (old2, new2) == (old, new):
        return
    if 1 <= old2 <= new2 and consistency_path(old2, TREE_HASHES[:new2]) == path:
        return  # the same path genuinely proves the other pair too
    # Claimed sizes with the genuine roots of those sizes.
    with pytest.raises(ConsistencyError):
        verify_consistency(old2, new2, TREE_ROOTS[old2], TREE_ROOTS[new2], path)


@PROPS
@given(st.integers(1, MAX_LEAVES), st.integers(0, MAX_LEAVES))
def test_prop_consistency_old_above_new_or_zero_rejected(new: int, old: int) -> None:
    path = consistency_path(1, TREE_HASHES[:new])
    if old == 0:
        with pytest.raises(ConsistencyError, match="size 0"):
            verify_consistency(0, new, EMPTY_ROOT, TREE_ROOTS[new], path)
    elif old > new:
        with pytest.raises(ConsistencyError, match="above"):
            verify_consistency(old, new, TREE_ROOTS[old], TREE_ROOTS[new], path)


@PROPS
@given(st.integers(1, MAX_LEAVES))
def test_prop_equal_sizes_take_the_empty_path(size: int) -> None:
    assert consistency_path(size, TREE_HASHES[:size]) == []
    verify_consistency(size, size, TREE_ROOTS[size], TREE_ROOTS[size], [])
    with pytest.raises(ConsistencyError):
        verify_consistency(size, size, TREE_ROOTS[size], TREE_ROOTS[size], [TREE_ROOTS[size]])


# --------------------------------------------------------------------------
# Second preimages: a leaf can never pass for an interior node
# --------------------------------------------------------------------------


def test_second_preimage_leaf_imitating_an_interior_node() -> None:
    hashes = TREE_HASHES[:4]
    left, right = hashes[0], hashes[1]
    inner = node_hash(left, right)            # MTH(D[0:2])
    sibling = node_hash(hashes[2], hashes[3])  # MTH(D[2:4])
    full_root = root(hashes)
    assert node_hash(inner, sibling) == full_root

    forged = b"\x01" + left + right  # leaf data equal to the node's preimage
    assert hashlib.sha256(forged).digest() == inner  # what an unprefixed tree would use
    assert leaf_hash(forged) != inner

    # The interior node, presented as leaf 0 of a 2-leaf tree one level up,
    # "verifies" only if the verifier is handed the node hash itself; the
    # envelope's leaf hash H(0x00 || data) never equals it.
    verify_inclusion(0, 2, inner, [sibling], full_root)
    with pytest.raises(InclusionError):
        verify_inclusion(0, 2, leaf_hash(forged), [sibling], full_root)
    # Nor does the forged leaf pass as the whole two-leaf subtree.
    with pytest.raises(InclusionError):
        verify_inclusion(0, 1, leaf_hash(forged), [], inner)
    # And appending it as a leaf builds a different tree.
    assert root([leaf_hash(forged), sibling]) != full_root


def test_second_preimage_works_without_domain_separation() -> None:
    """Why the prefixes matter: pymerkle with security off is fooled."""
    data = [b"a", b"b", b"c", b"d"]
    naive = InmemoryTree(algorithm="sha256", disable_security=True)
    for d in data:
        naive.append_entry(d)
    la, lb = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    lc, ld = hashlib.sha256(b"c").digest(), hashlib.sha256(b"d").digest()
    forged = InmemoryTree(algorithm="sha256", disable_security=True)
    forged.append_entry(la + lb)
    forged.append_entry(lc + ld)
    assert forged.get_root() == naive.get_root()  # two leaves pass for four
    # With RFC 9162 prefixes the same trick yields another root.
    rfc = [leaf_hash(d) for d in data]
    assert root([leaf_hash(rfc[0] + rfc[1]), leaf_hash(rfc[2] + rfc[3])]) != root(rfc)
    assert root([leaf_hash(b"\x01" + rfc[0] + rfc[1]),
                 leaf_hash(b"\x01" + rfc[2] + rfc[3])]) != root(rfc)


def test_errors_are_verification_errors_naming_the_step() -> None:
    with pytest.raises(VerificationError) as inc:
        verify_inclusion(0, 2, GOLDEN_HASHES[0], [], ROOTS[2])
    assert inc.value.step == "inclusion"
    with pytest.raises(VerificationError) as con:
        verify_consistency(1, 2, ROOTS[1], ROOTS[2], [])
    assert con.value.step == "consistency"


def test_subtree_accessor_is_shared_with_persistent_logs() -> None:
    """inclusion_path_from / consistency_path_from over any subtree accessor."""
    calls: list[tuple[int, int]] = []

    def subtree(lo: int, hi: int) -> bytes:
        calls.append((lo, hi))
        return root(TREE_HASHES[lo:hi])

    assert merkle.inclusion_path_from(5, 13, subtree) == inclusion_path(5, TREE_HASHES[:13])
    assert merkle.consistency_path_from(5, 13, subtree) == consistency_path(5, TREE_HASHES[:13])
    # O(log n) subtree reads, each a range the RFC recursion visits.
    assert len(calls) <= 2 * 4 + 1


@given(st.integers(min_value=1, max_value=300), st.data())
@settings(max_examples=80, deadline=None)
def test_inclusion_path_by_nodes_equals_rfc_recursion(size: int, data: st.DataObject) -> None:
    """The unrolled PATH the persistent log uses is the RFC's recursion, exactly."""
    from ledger.merkle import inclusion_path_by_nodes

    hashes = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    path = inclusion_path_by_nodes(index, size, lambda lvl, i: merkle.root(hashes[i << lvl:(i + 1) << lvl]))
    assert path == merkle.inclusion_path(index, hashes)
