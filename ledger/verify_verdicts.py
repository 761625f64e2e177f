"""Offline verification of a bundle's verdict proof (PROTOCOL §10.11).

A bundle against a record's own block whose header is version 2 may carry
``verdict``: the record's verdict entry bytes (§10.5) with their RFC 9162
path to the header's ``verdicts`` root, and, once the record's approval was
decided, the transition entry with its own block's header, certificate and
path.  The header and certificate of the record's block are checked by the
bundle's steps before these run; the transition's block is checked here
against the validator set in force at its height (genesis for a version 1
bundle, the set the governance walk derives for a version 2 bundle).

A bundle without ``verdict`` still verifies.  Its verdict is then proven
only when its header is the record's own block and of version 1 (such a
block commits no verdicts: every record in it is ``allow``, policy 0,
§10.6); otherwise :func:`check_verdict_proof` returns None (not proven).

Pure functions over bytes, run in the order of :data:`VERDICT_STEPS`; each
failure is a :class:`~ledger.verdicts.VerdictError` naming its step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .blocks import HEADER_VERSION_VERDICTS, Certificate, Header
from .crypto import digest_equal
from .encoding import from_b64, to_hex
from .errors import BadEncoding, BundleFormatError, VerificationError
from .genesis import Genesis
from .merkle import HASH_LEN, leaf_hash
from .policy import Outcome
from .verdicts import (
    MAX_APPROVALS,
    TRANSITION_DOMAIN,
    VERDICT_DOMAIN,
    Status,
    Transition,
    Verdict,
    VerdictError,
    check_entry,
    decode_transition,
    decode_verdict,
    no_policy_verdict,
)
from .verify import check_certificate, check_header, parse_certificate

VERDICT_PROOF_KEYS = frozenset({"entry", "size", "path"})
TRANSITION_PROOF_KEYS = frozenset(
    {"height", "header", "certificate", "entry", "index", "size", "path"})
# A block has at most 2^64 entries, so a path has at most 64 hashes; a
# block's entries are its records and at most one transition per held record.
MAX_ENTRY_PATH = 64

VERDICT_STEPS: tuple[str, ...] = (
    "verdict",                 # the entry decodes, names the record, at its index of a v2 block
    "verdict_inclusion",       # RFC 9162 inclusion in the header's verdict root
    "transition_header",       # the transition's block: header, chain, version 2, validators
    "transition_certificate",  # a quorum of the set in force there signed it
    "transition",              # the entry decodes, names the record, follows from the verdict
    "transition_inclusion",    # RFC 9162 inclusion in that header's verdict root
)


@dataclass(frozen=True)
class ParsedTransitionProof:
    height: int
    header: bytes
    certificate: Certificate
    entry: bytes
    index: int
    size: int
    path: tuple[bytes, ...]


@dataclass(frozen=True)
class ParsedVerdictProof:
    """A bundle's ``verdict`` decoded into bytes and integers, nothing checked yet."""

    entry: bytes
    size: int
    path: tuple[bytes, ...]
    transition: ParsedTransitionProof | None = None


@dataclass(frozen=True)
class VerifiedVerdict:
    """What a bundle proves about its record's verdict."""

    verdict: Verdict
    status: Status
    index: int  # the verdict's entry index in the record's block (-1: a version 1 block)
    transition: Transition | None = None
    transition_height: int = 0

    @property
    def committed(self) -> bool:
        """True when the verdict is an entry under the header's root (not
        implied by a version 1 header)."""
        return self.index >= 0

    def to_json(self) -> dict[str, Any]:
        doc = self.verdict.to_json()
        doc["status"] = self.status.value
        doc["entry_index"] = self.index
        if self.transition is not None:
            doc["final_height"] = self.transition_height
            doc["approved_by"] = [to_hex(a) for a in self.transition.approvals]
        return doc


# --------------------------------------------------------------------------
# JSON shape (step ``bundle``)
# --------------------------------------------------------------------------


def _uint(doc: Mapping[str, Any], key: str, what: str) -> int:
    value = doc[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BundleFormatError(f"{what} {key!r} must be a non-negative integer")
    return value


def _b64(doc: Mapping[str, Any], key: str, what: str) -> bytes:
    value = doc[key]
    if not isinstance(value, str):
        raise BundleFormatError(f"{what} {key!r} must be base64 text")
    try:
        return from_b64(value, what=f"{what} {key}")
    except BadEncoding as exc:
        raise BundleFormatError(str(exc)) from None


def _path(value: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > MAX_ENTRY_PATH:
        raise BundleFormatError(f"{what} must be a list of at most {MAX_ENTRY_PATH} hex hashes")
    out = []
    for item in value:
        if not isinstance(item, str) or len(item) != 2 * HASH_LEN or item != item.lower():
            raise BundleFormatError(f"{what} entries must be 64 lowercase hex digits")
        try:
            out.append(bytes.fromhex(item))
        except ValueError:
            raise BundleFormatError(f"{what} entries must be 64 lowercase hex digits") from None
    return tuple(out)


def _exact(doc: Any, keys: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping) or set(doc) != keys:
        raise BundleFormatError(f"{what} must be an object of exactly {sorted(keys)}")
    return doc


def parse_verdict_proof(doc: Any) -> ParsedVerdictProof:
    """Step ``bundle``: a bundle's ``verdict`` has exactly the §10.11 keys and types."""
    if not isinstance(doc, Mapping):
        raise BundleFormatError("verdict must be a JSON object")
    keys = VERDICT_PROOF_KEYS | ({"transition"} if "transition" in doc else set())
    doc = _exact(doc, frozenset(keys), "verdict")
    transition = None
    if "transition" in doc:
        t = _exact(doc["transition"], TRANSITION_PROOF_KEYS, "verdict transition")
        transition = ParsedTransitionProof(
            height=_uint(t, "height", "verdict transition"),
            header=_b64(t, "header", "verdict transition"),
            certificate=parse_certificate(t["certificate"]),
            entry=_b64(t, "entry", "verdict transition"),
            index=_uint(t, "index", "verdict transition"),
            size=_uint(t, "size", "verdict transition"),
            path=_path(t["path"], "verdict transition path"))
    return ParsedVerdictProof(entry=_b64(doc, "entry", "verdict"),
                              size=_uint(doc, "size", "verdict"),
                              path=_path(doc["path"], "verdict path"), transition=transition)


def split_verdict(bundle: Any) -> tuple[Any, bool, Any]:
    """The bundle without its optional ``verdict``, whether it had one, and
    that field's JSON (parsed by :func:`parse_verdict_proof` once the
    bundle's own keys passed).  Anything but a JSON object is returned as
    it is, for the bundle's own steps to refuse."""
    if not isinstance(bundle, Mapping) or "verdict" not in bundle:
        return bundle, False, None
    return {k: v for k, v in bundle.items() if k != "verdict"}, True, bundle["verdict"]


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------


def in_block(leaf_index: int, header: Header) -> bool:
    """The header is the block that commits leaf ``leaf_index``."""
    return header.log_size - header.tx_count <= leaf_index < header.log_size


def _relabel(step: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except VerificationError as exc:
        raise VerdictError(f"{exc}", step=step) from None


def check_verdict_entry(proof: ParsedVerdictProof, record_id: bytes, leaf_index: int,
                        header: Header) -> tuple[Verdict, int]:
    """Steps ``verdict`` and ``verdict_inclusion``: the verdict and its entry index."""
    if not in_block(leaf_index, header):
        raise VerdictError(f"the bundle's block {header.height} does not commit leaf "
                           f"{leaf_index}: a verdict is proven against the record's own block")
    if header.version != HEADER_VERSION_VERDICTS or header.verdicts is None:
        raise VerdictError(f"block {header.height} is version {header.version}: it commits no "
                           "verdicts (every record in it is allow, policy 0)")
    verdict = decode_verdict(proof.entry)
    if not digest_equal(verdict.record, record_id):
        raise VerdictError(f"the verdict is of record {verdict.record.hex()}, not the bundle's")
    index = leaf_index - (header.log_size - header.tx_count)
    if proof.size < header.tx_count:
        raise VerdictError(f"verdict tree size {proof.size} is below the block's "
                           f"{header.tx_count} records")
    check_entry(index, proof.size, leaf_hash(VERDICT_DOMAIN + proof.entry), proof.path,
                header.verdicts, "verdict_inclusion")
    return verdict, index


def _reachable(verdict: Verdict, transition: Transition, header: Header) -> None:
    """A transition the verdict allows (PROTOCOL §10.7, §10.10): a held
    record (``approve``) becomes approved or rejected by its deadline, or
    expired after it; a record in review (``review``, no deadline) becomes
    approved or rejected; no other verdict has a transition."""
    held = verdict.outcome == Outcome.APPROVE
    if not held and verdict.outcome != Outcome.REVIEW:
        raise VerdictError(f"a {verdict.outcome.value} verdict has no transition",
                           step="transition")
    status, when = transition.status, f"in block {header.height} (time {header.time})"
    if status == Status.EXPIRED:
        if not held or header.time <= verdict.deadline:
            raise VerdictError(f"expired {when}: the {verdict.outcome.value} verdict's deadline "
                               f"is {verdict.deadline}", step="transition")
        return
    if held and header.time > verdict.deadline:
        raise VerdictError(f"{status.value} {when}, after the deadline {verdict.deadline}",
                           step="transition")
    if status == Status.APPROVED and not max(verdict.approvals, 1) <= \
            len(transition.approvals) <= MAX_APPROVALS:
        raise VerdictError(f"approved {when} with {len(transition.approvals)} approvals: the "
                           f"verdict needs {max(verdict.approvals, 1)}", step="transition")


def check_transition(proof: ParsedTransitionProof, verdict: Verdict, record_header: Header,
                     epoch_at: Callable[[int], Genesis]) -> Transition:
    """Steps ``transition_header`` to ``transition_inclusion``."""
    if proof.height < record_header.height:
        raise VerdictError(f"transition height {proof.height} is below the record's block "
                           f"{record_header.height}", step="transition_header")
    epoch = epoch_at(proof.height)
    header: Header = _relabel("transition_header", lambda: check_header(proof.header, epoch))
    if header.height != proof.height:
        raise VerdictError(f"transition height {proof.height} but header height "
                           f"{header.height}", step="transition_header")
    if header.version != HEADER_VERSION_VERDICTS or header.verdicts is None:
        raise VerdictError(f"block {header.height} is version {header.version}: it commits no "
                           "transitions", step="transition_header")
    _relabel("transition_certificate", lambda: check_certificate(proof.certificate, header, epoch))
    transition: Transition = _relabel("transition", lambda: decode_transition(proof.entry))
    if not digest_equal(transition.record, verdict.record):
        raise VerdictError(f"the transition is of record {transition.record.hex()}, not the "
                           "bundle's", step="transition")
    if not header.tx_count <= proof.index < proof.size:
        raise VerdictError(f"entry {proof.index} of block {header.height} is not a transition "
                           f"(its {header.tx_count} verdicts come first)", step="transition")
    _reachable(verdict, transition, header)
    check_entry(proof.index, proof.size, leaf_hash(TRANSITION_DOMAIN + proof.entry), proof.path,
                header.verdicts, "transition_inclusion")
    return transition


def check_verdict_proof(proof: ParsedVerdictProof | None, record_id: bytes, leaf_index: int,
                        header: Header,
                        epoch_at: Callable[[int], Genesis]) -> VerifiedVerdict | None:
    """:data:`VERDICT_STEPS` for a bundle whose own steps passed (its header
    is certified); None when the bundle proves no verdict."""
    if proof is None:
        if in_block(leaf_index, header) and header.version != HEADER_VERSION_VERDICTS:
            verdict = no_policy_verdict(record_id)
            return VerifiedVerdict(verdict, verdict.status, -1)
        return None
    verdict, index = check_verdict_entry(proof, record_id, leaf_index, header)
    if proof.transition is None:
        return VerifiedVerdict(verdict, verdict.status, index)
    transition = check_transition(proof.transition, verdict, header, epoch_at)
    return VerifiedVerdict(verdict, transition.status, index, transition,
                           proof.transition.height)

