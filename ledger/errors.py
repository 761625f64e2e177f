"""The ledger's error tree.

Every failure carries ``code``: the PROTOCOL §6 API error code the node
answers with, so the HTTP edge never has to guess.  ``step`` names what was
being checked, for auditors' messages.

Two families:

* :class:`VerificationError` - a pure check over bytes failed (decoding,
  signatures, Merkle paths, certificates).  Verifiers raise these and never
  return ``False``.
* :class:`AdmissionError` - the input is well formed but the node's state
  refuses it (nonce reused, parent unknown, mempool full, ...).
"""

from __future__ import annotations

from typing import Self


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""

    code: str = "bad_request"
    step: str = "input"

    def __init__(self, message: str = "", *, step: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        if step is not None:
            self.step = step

    @property
    def message(self) -> str:
        return str(self)

    def as_value(self) -> Self:
        """This error, to be kept as a value (a batch's per-item result, a
        cached verdict) rather than raised on: its traceback and chained
        exceptions are dropped.  A caught exception's traceback holds the
        frame that caught it, and through frames' ``f_back`` the callers';
        when that frame also holds the list the error is stored in, the pair
        is a reference cycle that keeps the whole batch alive until a full
        garbage collection.  Code and message are all a caller reads."""
        self.__traceback__ = None
        self.__cause__ = None
        self.__context__ = None
        return self


# --------------------------------------------------------------------------
# Pure verification failures
# --------------------------------------------------------------------------


class VerificationError(LedgerError):
    """A check over bytes failed."""

    code = "bad_request"
    step = "verify"


class DecodeError(VerificationError):
    """Bytes could not be decoded into the expected structure."""

    code = "bad_encoding"
    step = "decode"


class BadEncoding(DecodeError):
    """Not valid MessagePack / base64 / hex, or wrong structure or types."""

    code = "bad_encoding"


class NonCanonical(DecodeError):
    """Valid MessagePack that does not re-encode to exactly the same bytes."""

    code = "non_canonical"


class TooLarge(DecodeError):
    """Input exceeds a size limit."""

    code = "too_large"


class DuplicateSignature(DecodeError):
    """An envelope names one key twice among its signatures (PROTOCOL §9.2)."""

    code = "duplicate_signature"


class BadSignature(VerificationError):
    """An Ed25519 signature does not verify."""

    code = "bad_signature"
    step = "signature"


class UnknownSubmitter(VerificationError):
    """The submitter key is not listed in genesis."""

    code = "unknown_submitter"
    step = "submitter"


class ForbiddenRole(VerificationError):
    """The submitter lacks the role needed for this action."""

    code = "forbidden_role"
    step = "role"


class WrongChain(VerificationError):
    """The structure names another chain than this one."""

    code = "wrong_chain"
    step = "chain"


class RecordIdMismatch(VerificationError):
    """A record id does not equal H(record_bytes)."""

    step = "record_id"


class InclusionError(VerificationError):
    """An RFC 9162 inclusion proof does not verify."""

    step = "inclusion"


class ConsistencyError(VerificationError):
    """An RFC 9162 consistency proof does not verify."""

    step = "consistency"


class HeaderError(VerificationError):
    """A block header is malformed or does not match what it must."""

    step = "header"


class ValidatorSetMismatch(VerificationError):
    """A header's validator-set hash differs from genesis."""

    step = "validators"


class CertificateError(VerificationError):
    """A certificate is malformed, for another block, or badly signed."""

    step = "certificate"


class QuorumNotReached(CertificateError):
    """Fewer than a quorum of distinct genesis validators signed."""

    step = "quorum"


class BundleFormatError(VerificationError):
    """A proof bundle's JSON is missing fields or has wrong types."""

    code = "bad_encoding"
    step = "bundle"


class UnsupportedFormat(BundleFormatError):
    """A proof bundle names a format this verifier does not know."""

    step = "format"


class HeightMismatch(HeaderError):
    """Heights that must agree (bundle, header, certificate) differ."""

    step = "height"


class GenesisError(VerificationError):
    """The genesis document is malformed."""

    step = "genesis"


class StorageWriteFailed(LedgerError):
    """A write to the store failed (disk full, I/O error): what the caller
    meant to make durable may not be, and LevelDB refuses every later write
    until the store is reopened.  The node stops on it (node/failstop.py)."""

    code = "unavailable"
    step = "storage"


class StorageCorruption(VerificationError):
    """Stored data fails its integrity check."""

    code = "unavailable"
    step = "storage"


class SchemaUnsupported(LedgerError):
    """The store was written by a release with a schema version this code
    does not read (a newer one, or an old one without a migration).  Not
    damage: the store is left untouched."""

    code = "unavailable"
    step = "storage"

    def __init__(self, found: int, supported: int) -> None:
        self.found, self.supported = found, supported
        newer = ("written by a newer release; run that release, or restore a backup "
                 "made by this one" if found > supported else
                 "older than any this release migrates")
        super().__init__(f"store has schema version {found}, this release reads version "
                         f"{supported}: {newer}")


# --------------------------------------------------------------------------
# State-dependent refusals
# --------------------------------------------------------------------------


class AdmissionError(LedgerError):
    """Well-formed input the node's current state refuses."""

    step = "admission"


class NonceReused(AdmissionError):
    """(submitter, nonce) already names another record."""

    code = "nonce_reused"


class UnknownParent(AdmissionError):
    """A parent record is not known to this node."""

    code = "unknown_parent"


class BadTimestamp(AdmissionError):
    """The record's ts is outside the chain's window around the current time."""

    code = "bad_timestamp"


class TooMany(AdmissionError):
    """Too many items in one request."""

    code = "too_many"


class RateLimited(AdmissionError):
    """The node is saturated; retry later."""

    code = "rate_limited"


class AlertFlood(AdmissionError):
    """A monitor's alerts counted in the breaker window are at the chain
    param ``breaker_monitor_alerts`` already (PROTOCOL §12.3): further
    alerts would not count; retry once the window has moved on."""

    code = "alert_flood"


class Unavailable(AdmissionError):
    """The node cannot serve this now."""

    code = "unavailable"


class BadRequest(LedgerError):
    """A request's parameters are out of range (e.g. a proof height above the tip)."""

    code = "bad_request"
    step = "request"


class NotFound(LedgerError):
    """No such object."""

    code = "not_found"
    step = "lookup"


class NotCommitted(LedgerError):
    """The record is known but not yet committed."""

    code = "not_committed"
    step = "lookup"


# --------------------------------------------------------------------------
# Governance (PROTOCOL §9): refusals of governance records, and of records
# under a membership that changed.  Each is a VerificationError: a pure
# check over committed data and the membership derived from it.
# --------------------------------------------------------------------------


class GovernanceError(VerificationError):
    """A governance record is malformed or makes no sense (PROTOCOL §9.3)."""

    code = "bad_governance"
    step = "governance_record"


class NotAMember(GovernanceError):
    """A governance signer is not a member in force (a stranger or a removed member)."""

    code = "not_a_member"


class TooFewSignatures(GovernanceError):
    """Fewer distinct members signed than the governance threshold."""

    code = "too_few_signatures"


class ProposalExpired(GovernanceError):
    """The governance record is committed above its ``expires_height``."""

    code = "proposal_expired"


class ConflictingProposal(GovernanceError):
    """An earlier governance record changes the same target at the same height."""

    code = "conflicting_proposal"


class TooFewValidators(GovernanceError):
    """The change would leave fewer than 4 validators."""

    code = "too_few_validators"


class UnreachableThreshold(GovernanceError):
    """The change would leave a threshold outside 1..number of members."""

    code = "unreachable_threshold"


class ParamOutOfRange(GovernanceError):
    """A consensus param outside its bounds (ledger/params.py, PROTOCOL §9.3)."""

    code = "param_out_of_range"


class KeyRotated(UnknownSubmitter):
    """A record signed by a submitter key that was rotated out before its height."""

    code = "key_rotated"


class Paused(VerificationError):
    """The record lies in a scope paused by governance."""

    code = "paused"
    step = "submitter"


class BadRiskRecord(VerificationError):
    """A ``risk.*`` record whose kind, body or parents break PROTOCOL §12.2."""

    code = "bad_risk_record"
    step = "risk"
