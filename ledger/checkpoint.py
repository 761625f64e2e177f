"""Certified heads and checkpoints: proving a log only grew, detecting forks.

An auditor remembers the last block it verified (a :class:`CertifiedHead`:
header bytes plus quorum certificate).  On its next run it proves the node's
new head consistent with it (RFC 9162 consistency between the two
``log_root``\\ s).  Two validly certified heads that cannot both be true (same
height, different hash; or a consistency proof that fails) are a fork, and
both heads are the evidence: :class:`ForkDetected` carries them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .blocks import Certificate, Header, certificate_from_json, decode_header
from .crypto import digest_equal
from .encoding import from_b64, to_b64
from .errors import BundleFormatError, ConsistencyError, HeaderError
from .genesis import Genesis
from .verify import verify_certified_header, verify_consistency_between


@dataclass(frozen=True)
class CertifiedHead:
    header: Header
    certificate: Certificate

    @property
    def height(self) -> int:
        return self.header.height

    def verify(self, genesis: Genesis) -> None:
        """The header belongs to this chain and a quorum certified it."""
        verify_certified_header(self.header.header_bytes, self.certificate, genesis)

    def to_json(self) -> dict[str, Any]:
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
        return cls(header, certificate_from_json(doc["certificate"]))


class ForkDetected(ConsistencyError):
    """Two certified heads that cannot both belong to one append-only chain."""

    step = "fork"

    def __init__(self, message: str, first: CertifiedHead, second: CertifiedHead) -> None:
        super().__init__(message)
        self.first = first
        self.second = second

    def evidence(self) -> dict[str, Any]:
        return {"reason": str(self), "first": self.first.to_json(), "second": self.second.to_json()}


def check_same_height(genesis: Genesis, known: CertifiedHead, other: CertifiedHead) -> None:
    """Both heads certified at one height must be the same block."""
    other.verify(genesis)
    if other.height != known.height:
        raise HeaderError(f"expected a head at height {known.height}, got {other.height}")
    if not digest_equal(other.header.hash, known.header.hash):
        raise ForkDetected(
            f"two different certified blocks at height {known.height}", known, other
        )


def check_extends(
    genesis: Genesis, old: CertifiedHead, new: CertifiedHead, path: Sequence[bytes]
) -> None:
    """``new`` is certified and its log extends ``old``'s (RFC 9162 consistency)."""
    new.verify(genesis)
    if new.height < old.height or new.header.log_size < old.header.log_size:
        raise ForkDetected(
            f"new head (height {new.height}, log {new.header.log_size}) is behind the checkpoint "
            f"(height {old.height}, log {old.header.log_size})",
            old,
            new,
        )
    if new.height == old.height:
        check_same_height(genesis, old, new)
        return
    try:
        verify_consistency_between(
            old.header.header_bytes, old.certificate, new.header.header_bytes, new.certificate,
            path, genesis,
        )
    except ConsistencyError as exc:
        raise ForkDetected(
            f"log at height {new.height} is not an extension of the checkpoint at height {old.height}: {exc}",
            old,
            new,
        ) from None
