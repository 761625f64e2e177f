"""The bundle a node serves for a committed record, with its verdict proof
(PROTOCOL §6, §9.6 and §10.10).

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

from typing import Any, Protocol

from .blocks import HEADER_VERSION_VERDICTS, Header
from .encoding import to_b64, to_hex
from .errors import NotFound, StorageCorruption
from .membership import Membership
from .proofs import ProofSource, build_bundle, build_bundle_v2
from .records import decode_committed_envelope
from .verdict_store import RecordVerdict
from .verdicts import entry_path


class VerdictSource(ProofSource, Protocol):
    """What the verdict proof needs besides :class:`ProofSource` (``ChainStore``)."""

    def record_verdict(self, record_id: bytes, /) -> RecordVerdict | None: ...

    def verdict_entries(self, height: int, /) -> list[bytes] | None: ...


def _entries(chain: VerdictSource, header: Header) -> list[bytes]:
    entries = chain.verdict_entries(header.height)
    if entries is None or len(entries) < header.tx_count:
        raise StorageCorruption(f"verdicts of block {header.height} are missing")
    return entries


def _entry_proof(chain: VerdictSource, header: Header, index: int) -> dict[str, Any]:
    entries = _entries(chain, header)
    if not 0 <= index < len(entries):
        raise StorageCorruption(f"block {header.height} has no verdict entry {index}")
    return {"entry": to_b64(entries[index]), "size": len(entries),
            "path": [to_hex(h) for h in entry_path(entries, header.tx_count, index)]}


def verdict_proof(chain: VerdictSource, header: Header,
                  rv: RecordVerdict | None) -> dict[str, Any] | None:
    """The ``verdict`` field of a bundle against the record's own block
    ``header`` (None for a version 1 block: it commits no verdicts)."""
    if header.version != HEADER_VERSION_VERDICTS or rv is None or rv.index < 0:
        return None
    doc = _entry_proof(chain, header, rv.index)
    if rv.transition is not None and rv.final_height:
        final = chain.header(rv.final_height)
        certificate = chain.certificate(rv.final_height)
        if final is None or certificate is None:
            raise StorageCorruption(f"block {rv.final_height} is below the tip but not stored")
        doc["transition"] = {"height": final.height, "header": to_b64(final.header_bytes),
                             "certificate": certificate.to_json(), "index": rv.final_index,
                             **_entry_proof(chain, final, rv.final_index)}
    return doc


def build_served_bundle(chain: VerdictSource, membership: Membership, record_id: bytes, *,
                        location: tuple[int, int] | None = None) -> dict[str, Any]:
    """The bundle ``GET /v1/records/{id}/proof`` serves (PROTOCOL §6):
    version 2 exactly when §9.6 has it carry governance records (those
    before the record's block, or before its transition's block when it
    carries one), version 1 otherwise, with ``verdict`` when the record's
    block is version 2 (§10.10)."""
    rid = bytes(record_id)
    if location is None:
        location = chain.record_location(rid)
    if location is None:
        raise NotFound(f"record {to_hex(rid)} is not committed")
    height, leaf_index = location
    header = chain.header(height)
    if header is None:
        raise StorageCorruption(f"block {height} is below the tip but not stored")
    rv = chain.record_verdict(rid) if header.version == HEADER_VERSION_VERDICTS else None
    bundle: dict[str, Any] | None = None
    if membership.changes:  # a chain governance never touched: no decode
        submitter = decode_committed_envelope(chain.envelope_at(leaf_index)).record.submitter
        upto = max(height, rv.final_height if rv is not None and rv.transition else 0)
        ids = membership.proof_ids(submitter, upto)
        if ids:
            bundle = build_bundle_v2(chain, rid, ids)
    if bundle is None:
        bundle = build_bundle(chain, rid, location=location)
    proof = verdict_proof(chain, header, rv)
    if proof is not None:
        bundle["verdict"] = proof
    return bundle
