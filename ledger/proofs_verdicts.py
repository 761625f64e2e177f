"""The bundle a node serves for a committed record, with its verdict proof
(PROTOCOL §6, §9.6 and §10.11).

:func:`build_served_bundle` is :func:`ledger.proofs.build_record_bundle`
plus the optional ``verdict`` field: when the record's block is version 2,
its verdict entry bytes and their RFC 9162 path to the header's verdict
root, and when a transition decided the record's approval, that entry with
its block's header, certificate and path.  A bundle that carries a
transition is of version 2 as soon as governance changed the validators or
members before the transition's block, so that the verifier can judge that
block's certificate (§9.6).

Pure functions over a chain store (:class:`VerdictSource`); verification is
:mod:`ledger.verify_verdicts`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TypeVar

from .blocks import HEADER_VERSION_VERDICTS, Header
from .crypto import digest_equal
from .encoding import to_b64, to_hex
from .errors import NotFound, StorageCorruption, VerificationError
from .governance import GOV_PREFIX
from .membership import Membership
from .merkle import inclusion_path_by_nodes, node_hash, perfect_subtrees
from .native import native
from .policy import Outcome
from .proofs import ProofSource, build_bundle, build_bundle_v2
from .records import decode_committed_envelope
from .verdicts import decode_transition, decode_verdict, entry_leaves


class VerdictSource(ProofSource, Protocol):
    """What the verdict proof needs besides :class:`ProofSource` (``ChainStore``)."""

    def final_location(self, record_id: bytes, /) -> tuple[int, int] | None: ...

    def verdict_entries(self, height: int, /) -> list[bytes] | None: ...


# A block's entries and the perfect nodes of its verdict tree, kept for the
# blocks whose records' bundles were asked for last: a block's entries
# decode and hash in time linear in its size, and an auditor asks for the
# bundles of a block's records one after another.  Keyed by the header's
# hash, which commits to the entries (through ``verdicts``), so an entry
# never outlives its block's content.  Bounded in entries, not blocks.
MAX_CACHED_ENTRIES = 1 << 16


@dataclass(frozen=True)
class _BlockTree:
    entries: list[bytes]
    levels: list[list[bytes]]  # levels[k][i]: MTH of entries [i * 2^k, (i + 1) * 2^k)

    def path(self, index: int) -> list[bytes]:
        return inclusion_path_by_nodes(index, len(self.entries),
                                       lambda level, i: self.levels[level][i])

    def root(self) -> bytes:
        peaks = [self.levels[level][i] for level, i in perfect_subtrees(len(self.entries))]
        acc = peaks[-1]
        for peak in reversed(peaks[:-1]):
            acc = node_hash(peak, acc)
        return acc


_trees: OrderedDict[bytes, _BlockTree] = OrderedDict()
_cached = [0]  # entries held by _trees


def _pairs(level: list[bytes]) -> list[bytes]:
    even = level[: len(level) // 2 * 2]
    if native is not None:
        return native.pair_up(even)
    return [node_hash(even[i], even[i + 1]) for i in range(0, len(even), 2)]


def block_tree(chain: VerdictSource, header: Header) -> _BlockTree:
    """The verdict tree of version 2 block ``header``, checked against its root."""
    tree = _trees.get(header.hash)
    if tree is not None:
        _trees.move_to_end(header.hash)
        return tree
    entries = chain.verdict_entries(header.height)
    if entries is None or len(entries) < max(header.tx_count, 1) or header.verdicts is None:
        raise StorageCorruption(f"verdicts of block {header.height} are missing")
    levels = [entry_leaves(entries, header.tx_count)]
    while len(levels[-1]) > 1:
        levels.append(_pairs(levels[-1]))
    tree = _BlockTree(entries, levels)
    if not digest_equal(tree.root(), header.verdicts):
        raise StorageCorruption(f"verdicts of block {header.height} do not hash to its root")
    _trees[header.hash] = tree
    _cached[0] += len(entries)
    while _cached[0] > MAX_CACHED_ENTRIES and len(_trees) > 1:
        _cached[0] -= len(_trees.popitem(last=False)[1].entries)
    return tree


def entry_proof(tree: _BlockTree, index: int, height: int) -> dict[str, Any]:
    if not 0 <= index < len(tree.entries):
        raise StorageCorruption(f"block {height} has no verdict entry {index}")
    return {"entry": to_b64(tree.entries[index]), "size": len(tree.entries),
            "path": [to_hex(h) for h in tree.path(index)]}


@dataclass(frozen=True)
class _Found:
    """A record's verdict entry in its block's tree, and for a held record or
    one in review where the store says its transition is (height, index)."""

    tree: _BlockTree
    index: int
    record: bytes
    decided: tuple[int, int] | None

    @property
    def final_height(self) -> int:
        return self.decided[0] if self.decided is not None else 0


def _find(chain: VerdictSource, record_id: bytes, leaf_index: int,
          header: Header) -> _Found | None:
    """None for a version 1 block (it commits no verdicts)."""
    if header.version != HEADER_VERSION_VERDICTS:
        return None
    tree = block_tree(chain, header)
    index = leaf_index - (header.log_size - header.tx_count)
    if not 0 <= index < header.tx_count:
        raise StorageCorruption(f"leaf {leaf_index} is not in block {header.height}")
    verdict = _record_entry(tree, header, index, record_id, decode_verdict, "verdict")
    outcome = verdict.outcome
    # only a held record or one in review can have a transition
    held = outcome in (Outcome.APPROVE, Outcome.REVIEW)
    return _Found(tree, index, record_id, chain.final_location(record_id) if held else None)


def verdict_proof(chain: VerdictSource, found: _Found, height: int) -> dict[str, Any]:
    """The ``verdict`` field of a bundle against the record's own block."""
    doc = entry_proof(found.tree, found.index, height)
    if found.decided is not None:
        final_height, final_index = found.decided
        final = chain.header(final_height)
        certificate = chain.certificate(final_height)
        if final is None or certificate is None:
            raise StorageCorruption(f"block {final_height} is below the tip but not stored")
        tree = block_tree(chain, final)
        _check_transition(tree, final, final_index, found.record)
        doc["transition"] = {"height": final.height, "header": to_b64(final.header_bytes),
                             "certificate": certificate.to_json(), "index": final_index,
                             **entry_proof(tree, final_index, final.height)}
    return doc


def _check_transition(tree: _BlockTree, header: Header, index: int, record_id: bytes) -> None:
    """Raise unless entry ``index`` of block ``header`` is a transition of ``record_id``."""
    if not header.tx_count <= index < len(tree.entries):
        raise StorageCorruption(f"transition {index} of block {header.height} is missing")
    _record_entry(tree, header, index, record_id, decode_transition, "transition")


def build_served_bundle(chain: VerdictSource, membership: Membership, record_id: bytes, *,
                        location: tuple[int, int] | None = None) -> dict[str, Any]:
    """The bundle ``GET /v1/records/{id}/proof`` serves (PROTOCOL §6):
    version 2 exactly when §9.6 has it carry governance records (those
    before the record's block, or before its transition's block when it
    carries one) or the record is a governance record, version 1
    otherwise; with ``verdict`` when the record's block is version 2
    (§10.11)."""
    rid = bytes(record_id)
    if location is None:
        location = chain.record_location(rid)
    if location is None:
        raise NotFound(f"record {to_hex(rid)} is not committed")
    height, leaf_index = location
    header = chain.header(height)
    if header is None:
        raise StorageCorruption(f"block {height} is below the tip but not stored")
    found = _find(chain, rid, leaf_index, header)
    bundle: dict[str, Any] | None = None
    if membership.changes:  # a chain governance never touched: no decode
        record = decode_committed_envelope(chain.envelope_at(leaf_index)).record
        upto = max(height, found.final_height if found is not None else 0)
        ids = membership.proof_ids(record.submitter, upto)
        # A governance record's signers are members, which only the version
        # 2 walk judges (§9.6): version 2 even with an empty list.
        if ids or record.kind.startswith(GOV_PREFIX):
            bundle = build_bundle_v2(chain, rid, ids)
    if bundle is None:
        bundle = build_bundle(chain, rid, location=location)
    if found is not None:
        bundle["verdict"] = verdict_proof(chain, found, height)
    return bundle


class _OfRecord(Protocol):
    @property
    def record(self) -> bytes: ...


_E = TypeVar("_E", bound=_OfRecord)


def _record_entry(tree: _BlockTree, header: Header, index: int, record_id: bytes,
                  decode: Callable[[bytes], _E], what: str) -> _E:
    """Entry ``index`` of block ``header``'s verdict tree decoded by ``decode``,
    raising :class:`StorageCorruption` unless it is ``record_id``'s."""
    try:
        entry = decode(tree.entries[index])
    except VerificationError as exc:
        raise StorageCorruption(f"{what} {index} of block {header.height}: {exc}") from None
    if entry.record != record_id:
        raise StorageCorruption(f"{what} {index} of block {header.height} names another record")
    return entry
