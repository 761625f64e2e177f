"""Verification of version 2 bundles across epochs (PROTOCOL §9.6).

From the first genesis alone: walk the governance records the bundle carries,
each proven by its own inclusion proof and a certificate of the validator set
in force at its block (as derived so far), applying each at its effective
height - a light client's walk over validator-set changes - then check the
record against the membership and validator set in force at its height.

Pure functions over bytes and the genesis document, in the fixed order of
:data:`V2_STEPS`; each failure is a :class:`~ledger.errors.VerificationError`
naming its step.  Version 1 bundles go through :func:`ledger.verify.verify_bundle`
unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .blocks import Header
from .encoding import H
from .errors import (
    BundleFormatError,
    GovernanceError,
    HeightMismatch,
    NotAMember,
    TooFewSignatures,
    UnsupportedFormat,
    VerificationError,
)
from .genesis import Genesis
from .membership import Membership, is_governance
from .merkle import verify_inclusion
from .records import Envelope, verify_signatures
from .verify import (
    BUNDLE_FORMAT,
    BUNDLE_KEYS,
    ParsedBundle,
    VerifiedBundle,
    as_genesis,
    check_bundle_chain,
    check_certificate,
    check_envelope,
    check_header,
    check_record_id,
    parse_bundle,
)
from .verify_verdicts import check_verdict_proof, parse_verdict_proof, split_verdict

BUNDLE_FORMAT_V2 = "auditledger-proof/2"
BUNDLE_KEYS_V2 = BUNDLE_KEYS | {"governance"}
MAX_GOVERNANCE = 4096

V2_STEPS: tuple[str, ...] = (
    "bundle", "format", "chain",
    "governance_bundle",   # a governance entry's JSON shape
    "governance_order",    # ascending leaf indexes, each inside its own block
    "epoch_header",        # its header, with the validators derived for its height
    "epoch_inclusion",     # its envelope's inclusion
    "epoch_certificate",   # a quorum of the set in force at its height signed it
    "governance_record",   # a valid governance record under the derived membership
    "envelope", "record_id", "record_chain", "submitter", "role",
    "risk",                # a risk.* record's body and parents (PROTOCOL §12.2)
    "signature",
    "header", "header_chain", "validators", "height",
    "record_block",        # the bundle's block holds the record's leaf
    "inclusion", "certificate_block", "certificate_height", "certificate", "quorum",
)


@dataclass
class EpochCache:
    """What a verifier keeps between bundles of one chain: the membership
    derived after each verified prefix of governance entries, keyed by what
    identifies those entries (leaf index, leaf hash and block hash of each).
    Every bundle of a chain carries a prefix of the same governance records,
    so an audit verifies each change once."""

    genesis: Genesis
    walks: dict[tuple[tuple[int, bytes, bytes], ...], Membership] = field(default_factory=dict)


def parse_bundle_v2(bundle: Any) -> tuple[ParsedBundle, list[Any]]:
    """Steps ``bundle`` and ``format``: the bundle's own fields, and
    ``governance`` as a list (each entry's shape is checked in the walk,
    step ``governance_bundle``)."""
    if not isinstance(bundle, Mapping):
        raise BundleFormatError("bundle must be a JSON object")
    if "format" not in bundle:
        raise BundleFormatError("bundle has no 'format'")
    if bundle["format"] != BUNDLE_FORMAT_V2:
        raise UnsupportedFormat(f"format {bundle['format']!r} is not {BUNDLE_FORMAT_V2!r}")
    if set(bundle) != BUNDLE_KEYS_V2:
        raise BundleFormatError(f"bundle keys wrong: need exactly {sorted(BUNDLE_KEYS_V2)}")
    governance = bundle["governance"]
    if not isinstance(governance, list) or len(governance) > MAX_GOVERNANCE:
        raise BundleFormatError(f"governance must be a list of at most {MAX_GOVERNANCE} bundles")
    own = {k: bundle[k] for k in BUNDLE_KEYS}
    own["format"] = BUNDLE_FORMAT
    return parse_bundle(own), list(governance)


def parse_entry(entry: Any) -> ParsedBundle:
    """Step ``governance_bundle``: one entry has the §5 shape."""
    try:
        return parse_bundle(entry)
    except VerificationError as exc:
        raise BundleFormatError(str(exc), step="governance_bundle") from None


def _in_block(leaf_index: int, header: Header) -> bool:
    return header.log_size - header.tx_count <= leaf_index < header.log_size


def _walk_entry(membership: Membership, entry: ParsedBundle, genesis: Genesis,
                last_leaf: int) -> Membership:
    """One governance entry: proven in a block certified by the set in force
    there, then applied.  Raises with the entry's own step names."""
    try:
        check_bundle_chain(entry.chain, genesis)
    except VerificationError as exc:
        raise type(exc)(str(exc), step="governance_bundle") from None
    if entry.leaf_index <= last_leaf:
        raise VerificationError(f"leaf {entry.leaf_index} does not follow leaf {last_leaf}",
                                step="governance_order")
    epoch = membership.at(entry.height).as_genesis(genesis)
    try:
        header = check_header(entry.header, epoch)
        if header.height != entry.height:
            raise HeightMismatch(f"bundle height {entry.height}, header {header.height}")
    except VerificationError as exc:
        raise type(exc)(str(exc), step="epoch_header") from None
    if not _in_block(entry.leaf_index, header):
        raise VerificationError(f"leaf {entry.leaf_index} is not in block {header.height}",
                                step="governance_order")
    try:
        envelope = check_envelope(entry.envelope)
        check_record_id(envelope, entry.record_id)
    except VerificationError as exc:
        raise type(exc)(str(exc), step="governance_record") from None
    try:
        verify_inclusion(entry.leaf_index, header.log_size, envelope.leaf_hash, entry.inclusion,
                         header.log_root)
    except VerificationError as exc:
        raise type(exc)(str(exc), step="epoch_inclusion") from None
    try:
        check_certificate(entry.certificate, header, epoch)
    except VerificationError as exc:
        raise type(exc)(str(exc), step="epoch_certificate") from None
    try:
        if not is_governance(envelope):
            raise GovernanceError(f"record kind {envelope.record.kind!r} is not governance")
        if envelope.record.chain != genesis.chain:
            raise GovernanceError("governance record for another chain")
        return membership.apply(entry.height, [envelope])
    except VerificationError as exc:
        raise type(exc)(str(exc), step="governance_record") from None


def walk_governance(raw_entries: list[Any], genesis: Genesis,
                    cache: EpochCache | None = None) -> Membership:
    """The membership derived from genesis and the governance entries
    (steps ``governance_bundle`` to ``governance_record``, entry by entry)."""
    entries: list[ParsedBundle] = []
    for i, raw in enumerate(raw_entries):
        try:
            entries.append(parse_entry(raw))
        except VerificationError as exc:
            raise type(exc)(f"governance[{i}]: {exc}", step=exc.step) from None
    if cache is not None and cache.genesis.raw != genesis.raw:
        raise ValueError("an EpochCache belongs to the genesis it was made with")
    membership = Membership.from_genesis(genesis)
    keys: list[tuple[int, bytes, bytes]] = []
    start = 0
    if cache is not None:
        for k in range(len(entries), 0, -1):
            prefix = tuple(_entry_key(e) for e in entries[:k])
            hit = cache.walks.get(prefix)
            if hit is not None:
                membership, start, keys = hit, k, list(prefix)
                break
    last_leaf = entries[start - 1].leaf_index if start else -1
    for i in range(start, len(entries)):
        entry = entries[i]
        try:
            membership = _walk_entry(membership, entry, genesis, last_leaf)
        except VerificationError as exc:
            raise type(exc)(f"governance[{i}]: {exc}", step=exc.step) from None
        last_leaf = entry.leaf_index
        keys.append(_entry_key(entry))
        if cache is not None:
            cache.walks[tuple(keys)] = membership
    return membership


def _entry_key(entry: ParsedBundle) -> tuple[int, bytes, bytes]:
    return (entry.leaf_index, H(b"\x00" + entry.envelope), H(entry.header))


def _check_signers(envelope: Envelope, membership: Membership, height: int) -> str:
    """Steps ``submitter`` to ``signature`` for the record itself: judged
    against the membership in force at its height (PROTOCOL §9.4)."""
    state = membership.at(height)
    if is_governance(envelope):
        signers = {key for key, _ in envelope.signatures()}
        for key in signers:
            if key not in state.members:
                raise NotAMember(f"signer {key.hex()} is not a member at height {height}",
                                 step="submitter")
        if len(signers) < state.threshold:
            raise TooFewSignatures(f"{len(signers)} members signed, threshold "
                                   f"{state.threshold}", step="submitter")
        verify_signatures(envelope)
        return state.members[envelope.record.submitter].name
    membership.check_record(envelope, height)
    return state.submitters[envelope.record.submitter].name


def verify_bundle_v2(bundle: Any, genesis: Genesis | Mapping[str, Any],
                     cache: EpochCache | None = None) -> VerifiedBundle:
    """Verify an ``auditledger-proof/2`` bundle from the first genesis,
    running :data:`V2_STEPS` in order, then the verdict steps of PROTOCOL
    §10.11 (:data:`ledger.verify_verdicts.VERDICT_STEPS`)."""
    g = as_genesis(genesis)
    own, has_verdict, raw_verdict = split_verdict(bundle)
    parsed, entries = parse_bundle_v2(own)
    proof = parse_verdict_proof(raw_verdict) if has_verdict else None
    check_bundle_chain(parsed.chain, g)
    membership = walk_governance(entries, g, cache)
    envelope = check_envelope(parsed.envelope)
    check_record_id(envelope, parsed.record_id)
    if envelope.record.chain != g.chain:
        raise VerificationError(f"record is for chain {envelope.record.chain!r}",
                                step="record_chain")
    # the record's height is the bundle's (checked against the header at
    # step ``height``, and the leaf against the block at ``record_block``)
    submitter_name = _check_signers(envelope, membership, parsed.height)
    epoch = membership.at(parsed.height).as_genesis(g)
    header = check_header(parsed.header, epoch)
    if parsed.height != header.height:
        raise HeightMismatch(f"bundle height {parsed.height} but header height {header.height}")
    if not _in_block(parsed.leaf_index, header):
        raise VerificationError(
            f"leaf {parsed.leaf_index} is not in block {header.height} (a version 2 bundle is "
            "against the record's own block)", step="record_block")
    verify_inclusion(parsed.leaf_index, header.log_size, envelope.leaf_hash, parsed.inclusion,
                     header.log_root)
    check_certificate(parsed.certificate, header, epoch)
    found = check_verdict_proof(proof, envelope.id, parsed.leaf_index, header,
                                lambda h: membership.at(h).as_genesis(g))
    return VerifiedBundle(envelope=envelope, header=header, certificate=parsed.certificate,
                          leaf_index=parsed.leaf_index, submitter_name=submitter_name,
                          epoch=epoch, verdict=found)
