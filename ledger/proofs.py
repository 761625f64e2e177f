"""Build the proof documents a node hands out (PROTOCOL §5 and §6).

Pure functions over a chain store: they read committed data and shape it as
JSON.  They check only that the store is not handing out a bundle for the
wrong record (:class:`StorageCorruption`); verification proper is
:mod:`ledger.verify`'s job, run by whoever does not trust the node.

The chain store is anything that looks like :class:`ProofSource` (the
``ChainStore`` of ``docs/design.md``), so this module does not depend on the
storage layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .blocks import Certificate, Header
from .crypto import digest_equal
from .encoding import to_b64, to_hex
from .errors import BadRequest, NotFound, StorageCorruption
from .governance import GOV_PREFIX
from .membership import Membership
from .records import decode_committed_envelope, stored_record_id

BUNDLE_FORMAT = "auditledger-proof/1"
BUNDLE_FORMAT_V2 = "auditledger-proof/2"


class ProofLog(Protocol):
    """The Merkle log's proof accessors (``MerkleLog``)."""

    def inclusion_path(self, index: int, size: int, /) -> Sequence[bytes]: ...

    def consistency_path(self, old: int, new: int, /) -> Sequence[bytes]: ...


class ProofSource(Protocol):
    """What proof building needs from a chain store (``ChainStore``)."""

    @property
    def height(self) -> int: ...

    @property
    def log(self) -> ProofLog: ...

    def record_location(self, record_id: bytes, /) -> tuple[int, int] | None: ...

    def envelope_at(self, leaf_index: int, /) -> bytes: ...

    def header(self, height: int, /) -> Header | None: ...

    def certificate(self, height: int, /) -> Certificate | None: ...


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _certified_block(chain: ProofSource, height: int) -> tuple[Header, Certificate]:
    """The header and certificate at ``height``; both exist for every committed block."""
    header = chain.header(height)
    certificate = chain.certificate(height)
    if header is None or certificate is None:
        raise StorageCorruption(f"block {height} is below the tip but not stored")
    return header, certificate


def _log_size(chain: ProofSource) -> int:
    """The committed log size: the tip header's ``log_size`` (0 before block 1)."""
    if chain.height < 1:
        return 0
    header = chain.header(chain.height)
    if header is None:
        raise StorageCorruption(f"tip block {chain.height} is not stored")
    return header.log_size


def build_bundle(chain: ProofSource, record_id: bytes, height: int | None = None, *,
                 location: tuple[int, int] | None = None) -> dict[str, Any]:
    """The PROTOCOL §5 proof bundle for committed record ``record_id``.

    By default the proof is against the block that contains the record; with
    ``height`` it is against that later block (its log includes the record).

    Raises :class:`NotFound` for an id that is not committed (the node tells
    pending records apart itself) and :class:`BadRequest` for a height below
    the record's block or above the tip.  ``location`` is what
    ``chain.record_location(record_id)`` says, when the caller has just
    read it (a random read into the record index: a tenth of a bundle).
    """
    if location is None:
        location = chain.record_location(bytes(record_id))
    if location is None:
        raise NotFound(f"record {to_hex(bytes(record_id))} is not committed")
    block_height, leaf_index = location
    if height is None:
        height = block_height
    elif not _is_int(height):
        raise BadRequest("height must be an integer")
    elif height < block_height:
        raise BadRequest(f"height {height} is below the record's block {block_height}")
    elif height > chain.height:
        raise BadRequest(f"height {height} is above the tip {chain.height}")
    header, certificate = _certified_block(chain, height)
    if not leaf_index < header.log_size:
        raise StorageCorruption(
            f"leaf {leaf_index} is not in the log of block {height} ({header.log_size} leaves)"
        )
    envelope = chain.envelope_at(leaf_index)
    if not digest_equal(stored_record_id(envelope, leaf_index), bytes(record_id)):
        raise StorageCorruption(
            f"record index points to leaf {leaf_index}, which holds another record"
        )
    inclusion = chain.log.inclusion_path(leaf_index, header.log_size)
    return {
        "format": BUNDLE_FORMAT,
        "chain": header.chain,
        "record_id": to_hex(bytes(record_id)),
        "leaf_index": leaf_index,
        "envelope": to_b64(envelope),
        "height": header.height,
        "header": header.header_b64,
        "inclusion": [h.hex() for h in inclusion],
        "certificate": certificate.to_json(),
    }


def build_consistency(chain: ProofSource, old: int, new: int) -> dict[str, Any]:
    """The PROTOCOL §6 consistency proof between log sizes ``old`` and ``new``.

    Requires ``1 <= old <= new <= log size`` (:class:`BadRequest` otherwise);
    equal sizes take an empty path.
    """
    if not _is_int(old) or not _is_int(new):
        raise BadRequest("sizes must be integers")
    size = _log_size(chain)
    if not 1 <= old <= new <= size:
        raise BadRequest(f"need 1 <= from <= to <= log size {size}, got from={old} to={new}")
    path = chain.log.consistency_path(old, new) if old < new else []
    return {"from": old, "to": new, "path": [to_hex(h) for h in path]}


def build_bundle_v2(chain: ProofSource, record_id: bytes,
                    governance_ids: Sequence[bytes]) -> dict[str, Any]:
    """The PROTOCOL §9.6 bundle: the record's own §5 bundle (against its
    block) with format ``auditledger-proof/2`` and the §5 bundles of the
    governance records ``governance_ids`` (each against its own block), in
    log order.  Which ids to pass is
    :meth:`ledger.membership.Membership.proof_ids`."""
    entries = [build_bundle(chain, gid) for gid in governance_ids]
    entries.sort(key=lambda e: int(e["leaf_index"]))
    bundle = build_bundle(chain, record_id)
    bundle["format"] = BUNDLE_FORMAT_V2
    bundle["governance"] = entries
    return bundle


def build_record_bundle(chain: ProofSource, membership: Membership, record_id: bytes, *,
                        location: tuple[int, int] | None = None) -> dict[str, Any]:
    """The bundle a node serves for a committed record (PROTOCOL §6): version
    2 (:func:`build_bundle_v2`) exactly when the governance records §9.6 has
    it carry are not none - governance changed the validators, the members or
    the threshold before the record's block, or added, re-keyed or changed
    the roles of its submitter - or the record is itself a governance record
    (its signers are members, which only the version 2 walk judges: its list
    may be empty), and the §5 bundle otherwise, so that auditors of a chain
    governance never touched see version 1 only."""
    if location is None:
        location = chain.record_location(bytes(record_id))
    if location is None:
        raise NotFound(f"record {to_hex(bytes(record_id))} is not committed")
    if membership.changes:  # a chain governance never touched: no decode
        height, leaf_index = location
        record = decode_committed_envelope(chain.envelope_at(leaf_index)).record
        ids = membership.proof_ids(record.submitter, height)
        if ids or record.kind.startswith(GOV_PREFIX):
            return build_bundle_v2(chain, record_id, ids)
    return build_bundle(chain, record_id, location=location)
