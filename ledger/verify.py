"""Offline verification of proof bundles (PROTOCOL §5) and consistency proofs.

Everything here is a pure function over bytes and the genesis document: no
clock, no network, no storage.  Each check is one small function; each
raises a :class:`~ledger.errors.VerificationError` subclass whose ``step``
names what failed, and none returns ``False``.  :data:`STEPS` lists the steps
of :func:`verify_bundle` in the order they run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .blocks import Certificate, Header, certificate_from_json, decode_header, verify_certificate
from .crypto import digest_equal
from .encoding import from_b64, from_hex
from .errors import (
    BadEncoding,
    BundleFormatError,
    CertificateError,
    ConsistencyError,
    DecodeError,
    HeightMismatch,
    InclusionError,
    RecordIdMismatch,
    UnsupportedFormat,
    ValidatorSetMismatch,
    VerificationError,
    WrongChain,
)
from .genesis import Genesis, parse_genesis
from .merkle import HASH_LEN, verify_consistency, verify_inclusion
from .records import BatchedEnvelope, Envelope, decode_envelope, verify_envelope

if TYPE_CHECKING:
    from .verify_verdicts import VerifiedVerdict

BUNDLE_FORMAT = "auditledger-proof/1"
BUNDLE_KEYS = frozenset(
    {"format", "chain", "record_id", "leaf_index", "envelope", "height", "header",
     "inclusion", "certificate"}
)
CERTIFICATE_KEYS = frozenset({"height", "round", "block", "signatures"})
CONSISTENCY_KEYS = frozenset({"from", "to", "path"})
# A log of fewer than 2^64 leaves has paths of at most 64 (inclusion) or
# 2 * 64 (consistency) hashes; anything longer is rejected before hashing.
MAX_INCLUSION_PATH = 64
MAX_CONSISTENCY_PATH = 128

STEPS: tuple[str, ...] = (
    "bundle",        # JSON shape: keys, types, hex and base64
    "format",        # the format string
    "chain",         # bundle chain is the genesis chain
    "envelope",      # canonical envelope bytes
    "record_id",     # H(record_bytes) is the bundle's record_id
    "record_chain",  # the record names the genesis chain
    "submitter",     # submitter listed in genesis
    "role",          # ... with the 'submit' role
    "batch_path",    # batch envelopes: the path fits its index and batch size
    "signature",     # submitter's Ed25519 signature (of a batch: over its root)
    "header",        # canonical header bytes
    "header_chain",  # header names the genesis chain
    "validators",    # header's validator-set hash is genesis's
    "height",        # bundle height is the header's
    "inclusion",     # RFC 9162 inclusion of H(0x00 || envelope)
    "certificate_block",   # certificate is for this header hash
    "certificate_height",  # ... at this height
    "certificate",   # every precommit signature valid, no duplicate signer
    "quorum",        # a quorum of distinct genesis validators signed
)


@dataclass(frozen=True)
class VerifiedBundle:
    """What a valid bundle proves: this envelope is in the log certified by this block."""

    envelope: Envelope
    header: Header
    certificate: Certificate
    leaf_index: int
    submitter_name: str
    # A version 2 bundle (PROTOCOL §9.6): genesis with the validators,
    # submitters and members in force at the record's height, which name
    # the certificate's signer indexes.  None for version 1 (genesis's own).
    epoch: Genesis | None = None
    # What the bundle proves about the record's verdict (PROTOCOL §10.11):
    # None when it proves nothing (no ``verdict`` and a version 2 block, or
    # a bundle against a later block).
    verdict: VerifiedVerdict | None = None

    @property
    def record_id(self) -> bytes:
        return self.envelope.id

    @property
    def height(self) -> int:
        return self.header.height


@dataclass(frozen=True)
class ParsedBundle:
    """A bundle's JSON decoded into bytes and integers, nothing checked yet."""

    chain: str
    record_id: bytes
    leaf_index: int
    envelope: bytes
    height: int
    header: bytes
    inclusion: tuple[bytes, ...]
    certificate: Certificate


@dataclass(frozen=True)
class VerifiedConsistency:
    """Two certified headers whose logs are an RFC 9162 prefix of one another."""

    old: Header
    new: Header


@dataclass(frozen=True)
class ConsistencyProof:
    """A PROTOCOL §6 consistency document, decoded."""

    from_size: int
    to_size: int
    path: tuple[bytes, ...]


# --------------------------------------------------------------------------
# JSON shape
# --------------------------------------------------------------------------


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _field(doc: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    value = doc[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BundleFormatError(f"{what} {key!r} must be {kind.__name__}")
    return value


def _uint_field(doc: Mapping[str, Any], key: str, what: str) -> int:
    value = doc[key]
    if not _is_uint(value):
        raise BundleFormatError(f"{what} {key!r} must be a non-negative integer")
    return int(value)


def _exact_keys(doc: Any, keys: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise BundleFormatError(f"{what} must be a JSON object")
    present = set(doc)
    if present != keys:
        missing = sorted(keys - present, key=str)
        extra = sorted(present - keys, key=str)
        raise BundleFormatError(f"{what} keys wrong: missing {missing}, extra {extra}")
    return doc


def _hashes(value: Any, limit: int, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise BundleFormatError(f"{what} must be a list of hex hashes")
    if len(value) > limit:
        raise BundleFormatError(f"{what} has {len(value)} entries, at most {limit} are possible")
    try:
        return tuple(from_hex(h, length=HASH_LEN, what=f"{what} entry") for h in value)
    except BadEncoding as exc:
        raise BundleFormatError(str(exc)) from None


def parse_certificate(doc: Any) -> Certificate:
    """A certificate's JSON (exactly height, round, block, signatures)."""
    _exact_keys(doc, CERTIFICATE_KEYS, "certificate")
    try:
        return certificate_from_json(doc)
    except CertificateError as exc:
        raise BundleFormatError(f"certificate: {exc}") from None


def parse_bundle(bundle: Any) -> ParsedBundle:
    """Steps ``bundle`` and ``format``: the JSON has exactly the §5 keys and types."""
    if not isinstance(bundle, Mapping):
        raise BundleFormatError("bundle must be a JSON object")
    if "format" not in bundle:
        raise BundleFormatError("bundle has no 'format'")
    if bundle["format"] != BUNDLE_FORMAT:
        raise UnsupportedFormat(f"format {bundle['format']!r} is not {BUNDLE_FORMAT!r}")
    doc = _exact_keys(bundle, BUNDLE_KEYS, "bundle")
    try:
        record_id = from_hex(_field(doc, "record_id", str, "bundle"), length=HASH_LEN,
                             what="record_id")
        envelope = from_b64(_field(doc, "envelope", str, "bundle"), what="envelope")
        header = from_b64(_field(doc, "header", str, "bundle"), what="header")
    except BadEncoding as exc:
        raise BundleFormatError(str(exc)) from None
    return ParsedBundle(
        chain=_field(doc, "chain", str, "bundle"),
        record_id=record_id,
        leaf_index=_uint_field(doc, "leaf_index", "bundle"),
        envelope=envelope,
        height=_uint_field(doc, "height", "bundle"),
        header=header,
        inclusion=_hashes(doc["inclusion"], MAX_INCLUSION_PATH, "inclusion"),
        certificate=parse_certificate(doc["certificate"]),
    )


def parse_consistency(doc: Any) -> ConsistencyProof:
    """A PROTOCOL §6 ``{"from", "to", "path"}`` document."""
    doc = _exact_keys(doc, CONSISTENCY_KEYS, "consistency proof")
    return ConsistencyProof(
        from_size=_uint_field(doc, "from", "consistency proof"),
        to_size=_uint_field(doc, "to", "consistency proof"),
        path=_hashes(doc["path"], MAX_CONSISTENCY_PATH, "consistency path"),
    )


def as_genesis(genesis: Genesis | Mapping[str, Any]) -> Genesis:
    """A parsed :class:`Genesis`, parsing a JSON document if need be (step ``genesis``)."""
    if isinstance(genesis, Genesis):
        return genesis
    return parse_genesis(dict(genesis) if isinstance(genesis, Mapping) else genesis)


# --------------------------------------------------------------------------
# Record checks
# --------------------------------------------------------------------------


def check_bundle_chain(chain: str, genesis: Genesis) -> None:
    """Step ``chain``."""
    if chain != genesis.chain:
        raise WrongChain(f"bundle is for chain {chain!r}, genesis is {genesis.chain!r}")


def check_envelope(envelope_bytes: bytes) -> Envelope:
    """Step ``envelope``: canonical envelope and record bytes, within 8 KiB."""
    try:
        return decode_envelope(envelope_bytes, cosigs=True)
    except DecodeError as exc:
        raise type(exc)(f"envelope: {exc}", step="envelope") from None


def check_record_id(envelope: Envelope, record_id: bytes) -> None:
    """Step ``record_id``: the bundle's id is H(record_bytes)."""
    if not digest_equal(envelope.id, record_id):
        raise RecordIdMismatch(
            f"H(record_bytes) is {envelope.id.hex()}, bundle says {record_id.hex()}"
        )


def check_record(envelope: Envelope, genesis: Genesis) -> str:
    """Steps ``record_chain``, ``submitter``, ``role``, ``batch_path``,
    ``signature``; the submitter's name."""
    if envelope.record.chain != genesis.chain:
        raise WrongChain(
            f"record is for chain {envelope.record.chain!r}, genesis is {genesis.chain!r}",
            step="record_chain",
        )
    if isinstance(envelope, BatchedEnvelope):
        # Role and submitter first, as for any record, then the path: its
        # root is what the batch signature is checked over.
        verify_envelope(envelope, genesis, signature=False)
        try:
            envelope.batch_root()
        except InclusionError as exc:
            raise InclusionError(f"batch path: {exc}", step="batch_path") from None
    verify_envelope(envelope, genesis)
    return genesis.submitters[envelope.record.submitter].name


# --------------------------------------------------------------------------
# Block checks
# --------------------------------------------------------------------------


def check_header(header_bytes: bytes, genesis: Genesis) -> Header:
    """Steps ``header``, ``header_chain``, ``validators``."""
    try:
        header = decode_header(header_bytes)
    except DecodeError as exc:
        raise type(exc)(f"header: {exc}", step="header") from None
    if header.chain != genesis.chain:
        raise WrongChain(
            f"header is for chain {header.chain!r}, genesis is {genesis.chain!r}",
            step="header_chain",
        )
    if not digest_equal(header.validators, genesis.validators_hash):
        raise ValidatorSetMismatch(
            f"header validators {header.validators.hex()} differ from genesis "
            f"{genesis.validators_hash.hex()}"
        )
    return header


def check_certificate(certificate: Certificate, header: Header, genesis: Genesis) -> None:
    """Steps ``certificate_block``, ``certificate_height``, ``certificate``, ``quorum``."""
    if not digest_equal(certificate.block, header.hash):
        raise CertificateError(
            f"certificate is for block {certificate.block.hex()}, header hash is "
            f"{header.hash.hex()}",
            step="certificate_block",
        )
    if certificate.height != header.height:
        raise CertificateError(
            f"certificate height {certificate.height} differs from header height "
            f"{header.height}",
            step="certificate_height",
        )
    verify_certificate(certificate, header, genesis)


def verify_certified_header(
    header_bytes: bytes,
    certificate: Certificate | Mapping[str, Any],
    genesis: Genesis | Mapping[str, Any],
) -> Header:
    """A header of this chain and validator set, certified by a quorum."""
    g = as_genesis(genesis)
    cert = certificate if isinstance(certificate, Certificate) else parse_certificate(certificate)
    header = check_header(bytes(header_bytes), g)
    check_certificate(cert, header, g)
    return header


# --------------------------------------------------------------------------
# The bundle
# --------------------------------------------------------------------------


def verify_bundle(bundle: Any, genesis: Genesis | Mapping[str, Any]) -> VerifiedBundle:
    """Verify a PROTOCOL §5 bundle against genesis alone, running :data:`STEPS` in order.

    Returns what was proven; raises a :class:`~ledger.errors.VerificationError`
    whose ``step`` names the first check that failed.
    """
    if (isinstance(bundle, Mapping) and bundle.get("format") == "auditledger-proof/2"
            and "governance" in bundle):
        # PROTOCOL §9.6 (without its ``governance`` list a bundle is judged as
        # version 1 and fails at ``format``); imported here because it builds
        # on this module
        from .verify_epochs import verify_bundle_v2

        return verify_bundle_v2(bundle, genesis)
    from .verify_verdicts import check_verdict_proof, parse_verdict_proof, split_verdict

    g = as_genesis(genesis)
    own, has_verdict, raw_verdict = split_verdict(bundle)
    parsed = parse_bundle(own)
    proof = parse_verdict_proof(raw_verdict) if has_verdict else None
    check_bundle_chain(parsed.chain, g)
    envelope = check_envelope(parsed.envelope)
    check_record_id(envelope, parsed.record_id)
    submitter_name = check_record(envelope, g)
    header = check_header(parsed.header, g)
    if parsed.height != header.height:
        raise HeightMismatch(f"bundle height {parsed.height} but header height {header.height}")
    verify_inclusion(
        parsed.leaf_index, header.log_size, envelope.leaf_hash, parsed.inclusion, header.log_root
    )
    check_certificate(parsed.certificate, header, g)
    verified = VerifiedBundle(
        envelope=envelope,
        header=header,
        certificate=parsed.certificate,
        leaf_index=parsed.leaf_index,
        submitter_name=submitter_name,
    )
    # PROTOCOL §10.11: the verdict, against the now certified header
    found = check_verdict_proof(proof, envelope.id, parsed.leaf_index, header, lambda h: g)
    return replace(verified, verdict=found)


# --------------------------------------------------------------------------
# Consistency between two certified blocks (auditors)
# --------------------------------------------------------------------------


def verify_consistency_between(
    old_header_bytes: bytes,
    old_cert: Certificate | Mapping[str, Any],
    new_header_bytes: bytes,
    new_cert: Certificate | Mapping[str, Any],
    path: Sequence[bytes],
    genesis: Genesis | Mapping[str, Any],
) -> VerifiedConsistency:
    """Both headers are certified by genesis validators, and the log of the
    old one is an RFC 9162 prefix of the new one's (``path`` from §6).

    Two different certified headers at one height are reported as a
    :class:`ConsistencyError`: that is a fork, the one thing BFT forbids.
    """
    g = as_genesis(genesis)
    old = _labelled(old_header_bytes, old_cert, g, "old")
    new = _labelled(new_header_bytes, new_cert, g, "new")
    if old.height > new.height:
        raise ConsistencyError(f"old header height {old.height} is above new {new.height}")
    if old.height == new.height and not digest_equal(old.hash, new.hash):
        raise ConsistencyError(f"two different certified headers at height {old.height}: a fork")
    verify_consistency(old.log_size, new.log_size, old.log_root, new.log_root, path)
    return VerifiedConsistency(old=old, new=new)


def _labelled(
    header_bytes: bytes, cert: Certificate | Mapping[str, Any], genesis: Genesis, label: str
) -> Header:
    """:func:`verify_certified_header`, with ``label`` in front of any message."""
    try:
        return verify_certified_header(header_bytes, cert, genesis)
    except VerificationError as exc:
        raise type(exc)(f"{label} header: {exc}", step=exc.step) from None
