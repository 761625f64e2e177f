"""Consensus wire messages: :class:`Proposal`, :class:`SignedVote`, :class:`Decision`.

Each message is a canonical-MessagePack map with a ``"t"`` tag.  The transport
carries :func:`encode_message` bytes and the receiver calls
:func:`decode_message`, which rejects malformed input with a typed
:class:`ledger.errors.VerificationError` (``BadEncoding``/``NonCanonical``/
``TooLarge``/``HeaderError``/``CertificateError``).  Decoding checks form only;
signatures are checked by the state machine (it owns the verification cache).

* ``proposal``: ``{"t", "header": header_bytes, "envelopes": [envelope_bytes],
  "round", "pol_round" (-1 or < round), "pol": [vote message bytes], "sig"}``.
  ``sig`` is the round proposer's Ed25519 signature over
  ``PROPOSAL_DOMAIN + canonical({"chain","height","round","pol_round","block"})``;
  the block hash commits to the header, whose ``tx_root`` commits to the
  envelopes.  ``pol`` carries the quorum of prevotes that justify re-proposing a
  block from ``pol_round``: votes lost before the network stabilised would
  otherwise keep validators that missed that polka from ever accepting it.
* ``vote``: ``{"t", "vote": vote_bytes (PROTOCOL §4), "validator", "sig"}``.
* ``decision``: ``{"t", "header", "envelopes", "certificate": Certificate.to_bytes()}``
  a committed block, sent to validators still working on an earlier height.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, Sequence, Union

from ledger.blocks import Certificate, Header, Vote, VoteType, certificate_from_bytes, decode_header, decode_vote
# ``verify(public_key, domain, message, sig)`` raising ``BadSignature``:
# :func:`ledger.crypto.verify_signature` or a caching wrapper around it.
from ledger.blocks import SignatureCheck as SignatureCheck
from ledger.crypto import SIG_LEN, VOTE_DOMAIN
from ledger.encoding import canonical, decode
from ledger.errors import BadEncoding
from ledger.genesis import Genesis
from ledger.records import Envelope, decode_envelope

from .params import NIL_ROUND, proposer_for

PROPOSAL_DOMAIN = b"auditledger/proposal/v1\n"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_BLOCK_ENVELOPES = 100_000
MAX_POL_VOTES = 1024



class Signer(Protocol):
    """Anything with ``sign(domain, message) -> sig``; :class:`ledger.crypto.SigningKey` fits."""

    def sign(self, domain: bytes, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class SignedVote:
    """A §4 vote with its signer's genesis index and signature."""

    vote: Vote
    validator: int
    sig: bytes
    vote_bytes: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        # Cache the signed bytes: they are needed for every verification.
        if not self.vote_bytes:
            object.__setattr__(self, "vote_bytes", self.vote.vote_bytes)

    @cached_property
    def wire(self) -> bytes:
        """The encoded message (memoised: votes are re-encoded in every persisted state)."""
        return canonical(_vote_map(self))

    @property
    def height(self) -> int:
        return self.vote.height

    @property
    def round(self) -> int:
        return self.vote.round

    @property
    def type(self) -> VoteType:
        return self.vote.type

    @property
    def block(self) -> bytes | None:
        return self.vote.block

    def verify(self, genesis: Genesis, check: SignatureCheck) -> None:
        if not 0 <= self.validator < genesis.n:
            raise BadEncoding(f"validator index {self.validator} is not in genesis")
        check(genesis.validators[self.validator].pubkey, VOTE_DOMAIN, self.vote_bytes, self.sig)


def sign_vote(vote: Vote, validator: int, signer: Signer) -> SignedVote:
    vote_bytes = vote.vote_bytes
    return SignedVote(vote, validator, signer.sign(VOTE_DOMAIN, vote_bytes), vote_bytes)


@dataclass(frozen=True)
class Proposal:
    """A block proposed for (height, round), with the data it commits to."""

    header: Header
    envelopes: tuple[Envelope, ...]
    round: int
    pol_round: int
    sig: bytes
    pol: tuple[SignedVote, ...] = ()

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def block_hash(self) -> bytes:
        return self.header.hash

    def sign_bytes(self) -> bytes:
        return proposal_sign_bytes(
            self.header.chain, self.height, self.round, self.pol_round, self.block_hash
        )

    def verify(self, genesis: Genesis, check: SignatureCheck) -> None:
        """Check the signature of the validator whose turn (height, round) is."""
        signer = proposer_for(genesis.n, self.height, self.round)
        check(genesis.validators[signer].pubkey, PROPOSAL_DOMAIN, self.sign_bytes(), self.sig)


def proposal_sign_bytes(chain: str, height: int, round_: int, pol_round: int, block: bytes) -> bytes:
    return canonical(
        {"chain": chain, "height": height, "round": round_, "pol_round": pol_round, "block": block}
    )


def sign_proposal(
    header: Header,
    envelopes: Sequence[Envelope],
    round_: int,
    pol_round: int,
    signer: Signer,
    pol: Sequence[SignedVote] = (),
) -> Proposal:
    msg = proposal_sign_bytes(header.chain, header.height, round_, pol_round, header.hash)
    return Proposal(header, tuple(envelopes), round_, pol_round, signer.sign(PROPOSAL_DOMAIN, msg), tuple(pol))


@dataclass(frozen=True)
class Decision:
    """A committed block with its certificate (catch-up for a lagging validator)."""

    header: Header
    envelopes: tuple[Envelope, ...]
    certificate: Certificate

    @property
    def height(self) -> int:
        return self.header.height


Message = Union[Proposal, SignedVote, Decision]


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def _vote_map(sv: SignedVote) -> dict[str, Any]:
    return {"t": "vote", "vote": sv.vote_bytes, "validator": sv.validator, "sig": sv.sig}


def encode_message(msg: Message) -> bytes:
    """Canonical MessagePack bytes of a consensus message."""
    if isinstance(msg, SignedVote):
        return msg.wire
    if isinstance(msg, Proposal):
        return canonical(
            {
                "t": "proposal",
                "header": msg.header.header_bytes,
                "envelopes": [e.envelope_bytes for e in msg.envelopes],
                "round": msg.round,
                "pol_round": msg.pol_round,
                "pol": [v.wire for v in msg.pol],
                "sig": msg.sig,
            }
        )
    if isinstance(msg, Decision):
        return canonical(
            {
                "t": "decision",
                "header": msg.header.header_bytes,
                "envelopes": [e.envelope_bytes for e in msg.envelopes],
                "certificate": msg.certificate.to_bytes(),
            }
        )
    raise TypeError(f"not a consensus message: {type(msg).__name__}")


_KEYS = {
    "vote": frozenset({"t", "vote", "validator", "sig"}),
    "proposal": frozenset({"t", "header", "envelopes", "round", "pol_round", "pol", "sig"}),
    "decision": frozenset({"t", "header", "envelopes", "certificate"}),
}


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadEncoding(f"{what} must be a non-negative integer")
    return value


def _bytes(value: Any, what: str, length: int | None = None) -> bytes:
    if not isinstance(value, bytes) or (length is not None and len(value) != length):
        raise BadEncoding(f"{what} must be {length or 'some'} bytes")
    return value


def _envelopes(value: Any) -> tuple[Envelope, ...]:
    if not isinstance(value, list) or len(value) > MAX_BLOCK_ENVELOPES:
        raise BadEncoding("envelopes must be a list of envelope bytes")
    return tuple(decode_envelope(_bytes(e, "envelope"), cosigs=True) for e in value)


def _is_pol_round(value: Any, round_: int) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return value == NIL_ROUND or 0 <= value < round_


def _vote_from_map(value: dict[str, Any]) -> SignedVote:
    vote_bytes = _bytes(value["vote"], "vote")
    vote = decode_vote(vote_bytes)
    return SignedVote(vote, _uint(value["validator"], "validator"), _bytes(value["sig"], "sig", SIG_LEN), vote_bytes)


def _proposal_from_map(value: dict[str, Any]) -> Proposal:
    round_ = _uint(value["round"], "round")
    pol_round = value["pol_round"]
    if not _is_pol_round(pol_round, round_):
        raise BadEncoding("pol_round must be -1 or a round below the proposal's round")
    raw_pol = value["pol"]
    if not isinstance(raw_pol, list) or len(raw_pol) > MAX_POL_VOTES:
        raise BadEncoding("pol must be a list of vote messages")
    if raw_pol and pol_round == NIL_ROUND:
        raise BadEncoding("a proposal without a POL round carries no POL votes")
    pol = tuple(_decode_vote_message(_bytes(v, "pol vote")) for v in raw_pol)
    header = decode_header(_bytes(value["header"], "header"))
    return Proposal(header, _envelopes(value["envelopes"]), round_, pol_round,
                    _bytes(value["sig"], "sig", SIG_LEN), pol)


def _decode_vote_message(data: bytes) -> SignedVote:
    value = decode(data)
    if not isinstance(value, dict) or set(value) != _KEYS["vote"] or value["t"] != "vote":
        raise BadEncoding("a POL entry must be a vote message")
    return _vote_from_map(value)


def _decision_from_map(value: dict[str, Any]) -> Decision:
    header = decode_header(_bytes(value["header"], "header"))
    cert = certificate_from_bytes(_bytes(value["certificate"], "certificate"))
    return Decision(header, _envelopes(value["envelopes"]), cert)


def decode_message(data: bytes, *, max_size: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode bytes from a peer; raises a ``VerificationError`` subclass if malformed."""
    value = decode(data, max_size=max_size)
    if not isinstance(value, dict) or not isinstance(value.get("t"), str) \
            or value["t"] not in _KEYS:
        raise BadEncoding("not a consensus message (missing or unknown 't')")
    kind = value["t"]
    if set(value) != _KEYS[kind]:
        raise BadEncoding(f"{kind} message keys must be exactly {sorted(_KEYS[kind])}")
    if kind == "vote":
        return _vote_from_map(value)
    if kind == "proposal":
        return _proposal_from_map(value)
    return _decision_from_map(value)
