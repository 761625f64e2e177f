"""Certified heads and checkpoints: proving a log only grew, detecting forks.

An auditor remembers the last block it verified (a :class:`CertifiedHead`:
header bytes plus quorum certificate).  On its next run it proves the node's
new head consistent with it (RFC 9162 consistency between the two
``log_root``\\ s).  Two validly certified heads that cannot both be true (same
height, different hash; or a consistency proof that fails) are a fork, and
both heads are the evidence: :class:`ForkDetected` carries them.

Across epochs (PROTOCOL §9.5): a head whose validator set is no longer the
genesis set carries an **epoch proof**, the §5 bundles of the governance
records that changed the validators and members before it (the
``governance`` list of a version 2 bundle, §9.6).  The head is verified by
walking that proof from the genesis, as a light client does, and checking
the certificate against the set in force at the head's height; a head
without one is judged against the genesis set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from .blocks import Certificate, Header, certificate_from_json, decode_header
from .crypto import digest_equal
from .encoding import from_b64, to_b64
from .errors import BundleFormatError, ConsistencyError, HeaderError
from .genesis import Genesis
from .merkle import verify_consistency
from .verify import verify_certified_header
from .verify_epochs import MAX_GOVERNANCE, EpochCache, walk_governance


@dataclass(frozen=True)
class CertifiedHead:
    header: Header
    certificate: Certificate
    # §5 bundles of the governance records behind the head's validator set
    epoch_proof: tuple[Any, ...] = field(default=(), compare=False)

    @property
    def height(self) -> int:
        return self.header.height

    def verify(self, genesis: Genesis, cache: EpochCache | None = None) -> Genesis:
        """The header belongs to this chain and a quorum of the validator set
        in force at its height certified it; returns that epoch (a genesis
        document with its validators, for labels)."""
        epoch = genesis
        if self.epoch_proof:
            membership = walk_governance(list(self.epoch_proof), genesis, cache)
            epoch = membership.at(self.height).as_genesis(genesis)
        verify_certified_header(self.header.header_bytes, self.certificate, epoch)
        return epoch

    def with_epoch_proof(self, proof: Sequence[Any]) -> "CertifiedHead":
        return CertifiedHead(self.header, self.certificate, tuple(proof))

    def to_json(self) -> dict[str, Any]:
        doc = self._json()
        if self.epoch_proof:
            doc["epoch_proof"] = list(self.epoch_proof)
        return doc

    def _json(self) -> dict[str, Any]:
        return {
            "chain": self.header.chain,
            "height": self.header.height,
            "hash": self.header.hash.hex(),
            "log_size": self.header.log_size,
            "log_root": self.header.log_root.hex(),
            "header": to_b64(self.header.header_bytes),
            "certificate": self.certificate.to_json(),
        }

    @classmethod
    def from_json(cls, doc: Any) -> "CertifiedHead":
        """From a checkpoint entry or a ``GET /v1/blocks/{h}`` answer."""
        if not isinstance(doc, dict) or "header" not in doc or "certificate" not in doc:
            raise BundleFormatError("a certified head needs 'header' and 'certificate'")
        header = decode_header(from_b64(doc["header"], what="header"))
        proof = doc.get("epoch_proof", [])
        if not isinstance(proof, list) or len(proof) > MAX_GOVERNANCE:
            raise BundleFormatError(f"epoch_proof must be a list of at most {MAX_GOVERNANCE} bundles")
        return cls(header, certificate_from_json(doc["certificate"]), tuple(proof))


def genesis_digest(genesis: Genesis) -> str:
    """What names a chain for an auditor's checkpoints: the SHA-256 (hex) of
    the genesis document as JSON with sorted keys, no whitespace, every
    non-ASCII character \\u-escaped (so the text is ASCII).
    Over the content, not the file's bytes, so two copies of one genesis
    formatted differently share their checkpoint, and two chains that share
    only a chain id never do."""
    text = json.dumps(genesis.raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class ForkDetected(ConsistencyError):
    """Two certified heads that cannot both belong to one append-only chain."""

    step = "fork"

    def __init__(self, message: str, first: CertifiedHead, second: CertifiedHead) -> None:
        super().__init__(message)
        self.first = first
        self.second = second

    def evidence(self) -> dict[str, Any]:
        return {"reason": str(self), "first": self.first.to_json(), "second": self.second.to_json()}


def check_same_height(genesis: Genesis, known: CertifiedHead, other: CertifiedHead,
                      cache: EpochCache | None = None) -> None:
    """Both heads certified at one height must be the same block."""
    other.verify(genesis, cache)
    if other.height != known.height:
        raise HeaderError(f"expected a head at height {known.height}, got {other.height}")
    if not digest_equal(other.header.hash, known.header.hash):
        raise ForkDetected(
            f"two different certified blocks at height {known.height}", known, other
        )


def check_extends(
    genesis: Genesis, old: CertifiedHead, new: CertifiedHead, path: Sequence[bytes],
    cache: EpochCache | None = None,
) -> None:
    """Both heads are certified (each by the set in force at its height) and
    ``new``'s log extends ``old``'s (RFC 9162 consistency)."""
    old.verify(genesis, cache)
    new.verify(genesis, cache)
    if new.height < old.height or new.header.log_size < old.header.log_size:
        raise ForkDetected(
            f"new head (height {new.height}, log {new.header.log_size}) is behind the checkpoint "
            f"(height {old.height}, log {old.header.log_size})",
            old,
            new,
        )
    if new.height == old.height:
        check_same_height(genesis, old, new, cache)
        return
    try:
        verify_consistency(old.header.log_size, new.header.log_size, old.header.log_root,
                           new.header.log_root, path)
    except ConsistencyError as exc:
        raise ForkDetected(
            f"log at height {new.height} is not an extension of the checkpoint at height {old.height}: {exc}",
            old,
            new,
        ) from None
