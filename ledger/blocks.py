"""Block headers, votes and certificates (PROTOCOL §4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from enum import StrEnum
from typing import Any

from .crypto import SIG_LEN, VOTE_DOMAIN, SigningKey, digest_equal, verify_signature
from .encoding import H, UINT64_MAX, canonical, decode, from_hex, to_b64, to_hex
from .errors import (
    BadEncoding,
    BadSignature,
    CertificateError,
    HeaderError,
    QuorumNotReached,
    VerificationError,
)
from .genesis import Genesis

HEADER_VERSION = 1
# Version 2 (PROTOCOL §10.6) adds ``verdicts``, the root of the block's
# verdicts and approval transitions; version 1 headers stay valid (a block
# without a policy in force at or before its height is built as version 1).
HEADER_VERSION_VERDICTS = 2
HASH_LEN = 32
ZERO_HASH = b"\x00" * HASH_LEN
HEADER_KEYS = frozenset(
    {"v", "chain", "height", "prev", "time", "proposer", "tx_count", "tx_root",
     "log_size", "log_root", "validators"}
)
HEADER_KEYS_V2 = HEADER_KEYS | {"verdicts"}
VOTE_KEYS = frozenset({"type", "chain", "height", "round", "block"})


class VoteType(StrEnum):
    """The two vote types.  The canonical vote bytes carry the value string
    (PROTOCOL §4); a member equals its string, so either may be compared."""

    PREVOTE = "prevote"
    PRECOMMIT = "precommit"


VOTE_TYPES: tuple[str, ...] = tuple(t.value for t in VoteType)


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT64_MAX


@dataclass(frozen=True)
class Header:
    chain: str
    height: int
    prev: bytes
    time: int
    proposer: int
    tx_count: int
    tx_root: bytes
    log_size: int
    log_root: bytes
    validators: bytes
    # The verdict root (PROTOCOL §10.6); None in a version 1 header.
    verdicts: bytes | None = None
    header_bytes: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.header_bytes:
            object.__setattr__(self, "header_bytes", canonical(self._as_map()))

    @property
    def version(self) -> int:
        return HEADER_VERSION if self.verdicts is None else HEADER_VERSION_VERDICTS

    def _as_map(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "v": self.version,
            "chain": self.chain,
            "height": self.height,
            "prev": self.prev,
            "time": self.time,
            "proposer": self.proposer,
            "tx_count": self.tx_count,
            "tx_root": self.tx_root,
            "log_size": self.log_size,
            "log_root": self.log_root,
            "validators": self.validators,
        }
        if self.verdicts is not None:
            fields["verdicts"] = self.verdicts
        return fields

    @property
    def hash(self) -> bytes:
        return H(self.header_bytes)

    @cached_property
    def header_b64(self) -> str:
        """``header_bytes`` in base64, as every proof bundle of the block
        carries it: encoded once per decoded header (the chain store keeps
        recent blocks' headers)."""
        return to_b64(self.header_bytes)

    def to_json(self) -> dict[str, Any]:
        """Decoded fields for the API, bytes as hex."""
        return {k: (to_hex(v) if isinstance(v, bytes) else v) for k, v in self._as_map().items()}


def decode_header(header_bytes: bytes) -> Header:
    """Decode canonical header bytes, validating every field's type."""
    value = decode(header_bytes)
    if not isinstance(value, dict) or "v" not in value:
        raise HeaderError("header must be a map with exactly the §4 keys")
    version = value["v"]
    if not _is_uint(version) or version not in (HEADER_VERSION, HEADER_VERSION_VERDICTS):
        raise HeaderError(f"unsupported header version {version!r}")
    if set(value) != (HEADER_KEYS if version == HEADER_VERSION else HEADER_KEYS_V2):
        raise HeaderError(f"header version {version} must be a map with exactly its keys "
                          "(§4, §10.6)")
    if not isinstance(value["chain"], str):
        raise HeaderError("header chain must be a string")
    for key in ("height", "time", "proposer", "tx_count", "log_size"):
        if not _is_uint(value[key]):
            raise HeaderError(f"header {key} must be a non-negative integer")
    if value["height"] < 1:
        raise HeaderError("header height starts at 1")
    for key in ("prev", "tx_root", "log_root", "validators", "verdicts"):
        if key in value and (not isinstance(value[key], bytes) or len(value[key]) != HASH_LEN):
            raise HeaderError(f"header {key} must be 32 bytes")
    return Header(
        chain=value["chain"],
        height=value["height"],
        prev=value["prev"],
        time=value["time"],
        proposer=value["proposer"],
        tx_count=value["tx_count"],
        tx_root=value["tx_root"],
        log_size=value["log_size"],
        log_root=value["log_root"],
        validators=value["validators"],
        verdicts=value.get("verdicts"),
        header_bytes=bytes(header_bytes),
    )


@dataclass(frozen=True)
class Vote:
    """A prevote or precommit for ``block`` (a header hash, or None for nil)."""

    type: VoteType
    chain: str
    height: int
    round: int
    block: bytes | None

    def __post_init__(self) -> None:
        # Accepts the string too (ValueError for anything else), so a vote
        # always holds the enum member.
        object.__setattr__(self, "type", VoteType(self.type))

    @property
    def vote_bytes(self) -> bytes:
        return canonical(
            {"type": self.type.value, "chain": self.chain, "height": self.height,
             "round": self.round, "block": self.block}
        )

    def sign(self, key: SigningKey) -> bytes:
        return key.sign(VOTE_DOMAIN, self.vote_bytes)


def decode_vote(vote_bytes: bytes) -> Vote:
    value = decode(vote_bytes)
    if not isinstance(value, dict) or set(value) != VOTE_KEYS:
        raise BadEncoding("vote must be a map with exactly the §4 keys")
    if value["type"] not in VOTE_TYPES:
        raise BadEncoding("vote type must be prevote or precommit")
    if not isinstance(value["chain"], str):
        raise BadEncoding("vote chain must be a string")
    if not _is_uint(value["height"]) or not _is_uint(value["round"]):
        raise BadEncoding("vote height and round must be non-negative integers")
    block = value["block"]
    if block is not None and (not isinstance(block, bytes) or len(block) != HASH_LEN):
        raise BadEncoding("vote block must be 32 bytes or nil")
    return Vote(VoteType(value["type"]), value["chain"], value["height"], value["round"], block)


def verify_vote(vote: Vote, validator: int, sig: bytes, genesis: Genesis) -> None:
    """Raise unless ``sig`` is genesis validator ``validator``'s signature on ``vote``."""
    if not 0 <= validator < genesis.n:
        raise BadSignature(f"validator index {validator} is not in genesis")
    verify_signature(genesis.validators[validator].pubkey, VOTE_DOMAIN, vote.vote_bytes, sig)


@dataclass(frozen=True)
class Certificate:
    """Precommits of a quorum of validators for one header hash (§4)."""

    height: int
    round: int
    block: bytes
    signatures: tuple[tuple[int, bytes], ...]

    def to_json(self) -> dict[str, Any]:
        """A new dict each call (callers may change theirs); the hex of the
        hash and signatures is computed once per certificate, which the
        chain store keeps for recent blocks and every proof bundle of the
        block carries."""
        block, sigs = self._hex
        return {
            "height": self.height,
            "round": self.round,
            "block": block,
            "signatures": [{"validator": v, "sig": s} for v, s in sigs],
        }

    @cached_property
    def _hex(self) -> tuple[str, tuple[tuple[int, str], ...]]:
        return to_hex(self.block), tuple((v, to_hex(s)) for v, s in self.signatures)

    def to_bytes(self) -> bytes:
        """Storage/wire form: canonical MessagePack."""
        return canonical(
            {"height": self.height, "round": self.round, "block": self.block,
             "signatures": [[v, s] for v, s in self.signatures]}
        )

    def precommit(self, chain: str) -> Vote:
        return Vote(VoteType.PRECOMMIT, chain, self.height, self.round, self.block)


def _cert_fields(height: Any, round_: Any, block: Any, sigs: Any) -> Certificate:
    if not _is_uint(height) or not _is_uint(round_):
        raise CertificateError("certificate height and round must be non-negative integers")
    if not isinstance(block, bytes) or len(block) != HASH_LEN:
        raise CertificateError("certificate block must be a 32-byte hash")
    if not isinstance(sigs, list):
        raise CertificateError("certificate signatures must be a list")
    out = []
    for item in sigs:
        if (
            not isinstance(item, tuple)
            or len(item) != 2
            or not _is_uint(item[0])
            or not isinstance(item[1], bytes)
            or len(item[1]) != SIG_LEN
        ):
            raise CertificateError("certificate signature entries are malformed")
        out.append(item)
    return Certificate(height, round_, block, tuple(out))


def certificate_from_bytes(data: bytes) -> Certificate:
    try:
        value = decode(data)
    except VerificationError as exc:
        raise CertificateError(f"certificate bytes: {exc}") from None
    if not isinstance(value, dict) or set(value) != {"height", "round", "block", "signatures"}:
        raise CertificateError("certificate must be a map of height, round, block, signatures")
    sigs = value["signatures"]
    if not isinstance(sigs, list) or not all(isinstance(s, list) and len(s) == 2 for s in sigs):
        raise CertificateError("certificate signatures must be [validator, sig] pairs")
    return _cert_fields(value["height"], value["round"], value["block"],
                        [(s[0], s[1]) for s in sigs])


def certificate_from_json(doc: Any) -> Certificate:
    if not isinstance(doc, dict) or not {"height", "round", "block", "signatures"} <= set(doc):
        raise CertificateError("certificate must have height, round, block, signatures")
    try:
        block = from_hex(doc["block"], length=HASH_LEN, what="certificate block")
        raw = doc["signatures"]
        if not isinstance(raw, list):
            raise CertificateError("certificate signatures must be a list")
        sigs = []
        for s in raw:
            if not isinstance(s, dict) or set(s) != {"validator", "sig"}:
                raise CertificateError("signature entries need exactly validator and sig")
            sigs.append((s["validator"], from_hex(s["sig"], length=SIG_LEN, what="signature")))
    except BadEncoding as exc:
        raise CertificateError(str(exc)) from None
    return _cert_fields(doc["height"], doc["round"], block, sigs)


# (public key, domain, message, signature) -> None, raising BadSignature.
SignatureCheck = Callable[[bytes, bytes, bytes, bytes], None]


def verify_certificate(cert: Certificate, header: Header, genesis: Genesis,
                       check: SignatureCheck = verify_signature) -> None:
    """Check ``cert`` certifies ``header``: same block hash and height, and a
    quorum of distinct genesis validators' valid precommits.

    Any invalid or duplicate signature rejects the whole certificate: a
    well-formed certificate never carries one.  The one certificate check:
    consensus passes its caching ``check`` (same answers as
    :func:`~ledger.crypto.verify_signature`).
    """
    if not digest_equal(cert.block, header.hash):
        raise CertificateError("certificate is for another block hash")
    if cert.height != header.height:
        raise CertificateError(
            f"certificate height {cert.height} differs from header height {header.height}"
        )
    vote_bytes = cert.precommit(genesis.chain).vote_bytes
    seen: set[int] = set()
    for validator, sig in cert.signatures:
        if validator in seen:
            raise CertificateError(f"validator {validator} signed twice")
        seen.add(validator)
        try:
            if not 0 <= validator < genesis.n:
                raise BadSignature(f"validator index {validator} is not in genesis")
            check(genesis.validators[validator].pubkey, VOTE_DOMAIN, vote_bytes, sig)
        except BadSignature as exc:
            raise CertificateError(f"validator {validator}'s precommit: {exc}") from None
    if len(seen) < genesis.quorum:
        raise QuorumNotReached(
            f"{len(seen)} distinct validators signed, quorum is {genesis.quorum} of {genesis.n}"
        )
